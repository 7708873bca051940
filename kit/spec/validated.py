"""Which spec texts already passed the schema, so that a process need not check them again.

JSON Schema validation is most of the cost of loading the specs: 0.6 s of 0.9 s here, paid
again in every xdist worker, and minutes in an emulated VM. A text that passed this very
schema (same schema, same jsonschema) is remembered by a digest of both: an empty file of
that name under $XDG_CACHE_HOME/kit/validated/. Only clean results are remembered, so a
text with an error is validated, and its errors reported, every time. The directory may be
missing, unwritable or emptied at any moment: it only ever saves time.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path

from kit.spec.schema import build_schema


def _schema_digest() -> bytes:
    try:
        version = metadata.version("jsonschema")
    except metadata.PackageNotFoundError:
        version = "?"
    schema = json.dumps(build_schema(), sort_keys=True)
    return hashlib.sha256(f"{version}\n{schema}".encode()).digest()


_SCHEMA = _schema_digest()
MAX_DIR_BYTES = 1 << 20     # a directory's own size: some 20 000 names on ext4


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kit" / "validated"


def _marker(text: str) -> Path:
    return cache_dir() / _SCHEMA.hex()[:16] / hashlib.sha256(text.encode()).hexdigest()


def passed(text: str) -> bool:
    """True if this text passed this schema before (False where the directory cannot be
    read: a run that dropped root's privileges still has root's $HOME)."""
    try:
        return _marker(text).exists()
    except OSError:
        return False


def hand_over(texts, cache_home: Path) -> int:
    """Copy the names of these texts that passed into another XDG_CACHE_HOME (a VM's, whose
    kit and schema are this one's); how many were."""
    names = [_marker(text) for text in texts if passed(text)]
    for name in names:
        into = cache_home / name.relative_to(cache_dir().parent.parent)
        into.parent.mkdir(parents=True, exist_ok=True)
        into.touch()
    return len(names)


def remember(text: str) -> None:
    """Note that this text passed the schema (quietly nothing if it cannot be noted)."""
    marker = _marker(text)
    try:
        if not marker.parent.is_dir():
            for old in cache_dir().glob("*"):      # other schemas' names are of no use
                shutil.rmtree(old, ignore_errors=True)
        elif marker.parent.stat().st_size > MAX_DIR_BYTES:
            shutil.rmtree(marker.parent, ignore_errors=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass
