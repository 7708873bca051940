"""Installed pages as PageText, cached per user: rendering and splitting the eight pages
takes about a second, and the report computes coverage at the end of every `kit run`.
The cache is keyed by the page file (path, size, mtime) and the splitter, and is only a
cache: any problem with it means the page is parsed again."""

from __future__ import annotations

import json
import os
import tempfile
from importlib import metadata
from pathlib import Path

from kit.coverage import manpage
from kit.coverage.sentences import PageText, Sentence, _Section, parse

CACHE_FORMAT = 1


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kit" / "coverage"


def _key(page: str, path: str) -> str:
    st = os.stat(path)
    try:
        splitter = metadata.version("pysbd")
    except metadata.PackageNotFoundError:
        splitter = "?"
    return json.dumps([CACHE_FORMAT, page, path, st.st_size, st.st_mtime_ns, splitter,
                       Path(__file__).with_name("sentences.py").stat().st_mtime_ns])


def _from_cache(file: Path, key: str) -> tuple[PageText, str | None, str | None] | None:
    try:
        data = json.loads(file.read_text())
        if data["key"] != key:
            return None
        sentences = [Sentence(i, s, t) for i, (s, t) in enumerate(data["sentences"])]
        sections = [_Section(n, t, [tuple(x) for x in spans])
                    for n, t, spans in data["sections"]]
        return PageText(data["page"], sentences, sections), data["footer"], data["package"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _to_cache(file: Path, key: str, text: PageText, footer: str | None,
              package: str | None) -> None:
    data = {"key": key, "page": text.page, "footer": footer, "package": package,
            "sentences": [[s.section, s.text] for s in text.sentences],
            "sections": [[s.name, s.text, s.spans] for s in text.sections]}
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".", suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(data, out)
        os.replace(tmp, file)
    except OSError:
        pass   # no cache: parsed again next time


def load_page(page: str, path: str) -> tuple[PageText, str | None, str | None]:
    """PAGE's sentences, the man-pages version in its footer, and the package (with its
    version) that installed it."""
    key = _key(page, path)
    file = _cache_dir() / f"{page.replace('(', '.').rstrip(')')}.json"
    cached = _from_cache(file, key)
    if cached:
        return cached
    rendered = manpage.render(page, path)
    text, footer = parse(page, rendered.text), manpage.footer_version(rendered.text)
    package = manpage.package_version(path)
    _to_cache(file, key, text, footer, package)
    return text, footer, package
