"""The sentence data: per man page, the sentences that are not claims and those no
user-space experiment can test, each with its reason (sentences/<name>.<section>.yaml), and
the sentences that behaviours quoting a neighbouring sentence check as well (`covered_by`,
naming them: one experiment, one quote, several sentences).

A mark names a whole section (its path as `kit coverage` prints it, e.g. "SEE ALSO" or
"DESCRIPTION, Example for suggested usage"; sentences below it included) or one sentence
by a piece of its text. A mark that matches no sentence of the installed page is stale,
like a quote: an error naming file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import yaml

from kit.spec.errors import SpecError
from kit.spec.loader import NotReadable, read_spec
from kit.spec.source import TooLarge, load_yaml

KINDS = ("not_claims", "untestable", "covered_by")
_MARK = {"type": "object", "additionalProperties": False, "required": ["reason"],
         "properties": {"section": {"type": "string", "minLength": 1},
                        "sentence": {"type": "string", "minLength": 1},
                        "reason": {"type": "string", "minLength": 3}},
         "oneOf": [{"required": ["section"]}, {"required": ["sentence"]}]}
# a sentence that behaviours citing another sentence check too: which ones, and how
_COVERED_BY = {"type": "object", "additionalProperties": False,
               "required": ["sentence", "behaviours", "reason"],
               "properties": {"sentence": {"type": "string", "minLength": 1},
                              "behaviours": {"type": "array", "minItems": 1,
                                             "items": {"type": "string", "minLength": 1}},
                              "reason": {"type": "string", "minLength": 3}}}
SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["page"],
    "properties": {
        "page": {"type": "string", "pattern": r"^[A-Za-z0-9_.:+-]+\(\d[a-z]*\)$"},
        # a page this machine's man-pages may lack: what is cited instead, and why
        "newer_page": {"type": "object", "additionalProperties": False,
                       "required": ["cited", "source", "note"],
                       "properties": {"cited": {"type": "string"},
                                      "source": {"type": "string"},
                                      "note": {"type": "string"}}},
        "not_claims": {"type": "array", "items": _MARK},
        "untestable": {"type": "array", "items": _MARK},
        "covered_by": {"type": "array", "items": _COVERED_BY},
    },
}
_VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


@dataclass(frozen=True)
class Mark:
    kind: str                 # "not_claims", "untestable" or "covered_by"
    reason: str
    file: str
    line: int
    field: str                # "not_claims[3]", for errors
    section: str | None = None
    sentence: str | None = None
    behaviours: tuple[str, ...] = ()


@dataclass
class PageData:
    page: str
    file: str
    newer_page: dict | None = None
    marks: list[Mark] = field(default_factory=list)


def _line(doc, path) -> int:
    node, line = doc, getattr(doc, "line", 1)
    for part in path:
        lines = getattr(node, "lines", {})
        line = lines.get(part, line)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        line = getattr(node, "line", line)
    return line


def _name(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def load(path: Path) -> PageData:
    """One data file, validated; SpecError naming file, line and field otherwise."""
    file = str(path)
    try:
        doc = load_yaml(read_spec(path))
    except NotReadable as exc:
        raise SpecError(str(exc), file=file, line=1) from None
    except TooLarge as exc:
        raise SpecError(f"not loaded: {exc.message}", file=file, line=exc.line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SpecError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=file,
                        line=mark.line + 1 if mark else 0) from None
    errors = sorted(_VALIDATOR.iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        path_ = list(err.absolute_path)
        message = err.message
        if err.validator == "oneOf":
            message = "a mark names either a section or a sentence (one of the two)"
        raise SpecError(message, file=file, line=_line(doc, path_), field=_name(path_))
    data = PageData(doc["page"], file, doc.get("newer_page"))
    for kind in KINDS:
        for i, raw in enumerate(doc.get(kind) or []):
            data.marks.append(Mark(kind, raw["reason"], file, getattr(raw, "line", 1),
                                   f"{kind}[{i}]", raw.get("section"), raw.get("sentence"),
                                   tuple(raw.get("behaviours") or ())))
    return data


def load_dir(root: Path) -> tuple[list[PageData], list[SpecError]]:
    pages, errors, seen = [], [], {}
    for path in sorted(root.glob("*.yaml")):
        try:
            data = load(path)
        except SpecError as exc:
            errors.append(exc)
            continue
        if data.page in seen:
            errors.append(SpecError(f"page {data.page} already described in {seen[data.page]}",
                                    file=str(path), line=1, field="page"))
            continue
        seen[data.page] = str(path)
        pages.append(data)
    return pages, errors
