"""A rendered man page as sections and sentences, and where a quote lies in them.

man-db renders each paragraph on one line (see manpage.WIDTH), indented as in the page:
column 0 is a section heading (.SH), column 3 a subsection (.SS), deeper lines are
paragraphs, list items, tags of tagged paragraphs (.TP: a short line followed by a more
indented body) and displays. Section, subsection and tags name where a sentence is; each
paragraph or list item is split into sentences by pysbd, so no sentence crosses a list item
or a section. A quote is searched in a section's paragraphs joined by spaces, so a quote
that runs from a tag into its body ("EPOLL_CLOEXEC Set the close-on-exec ...") is found.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

# What the rendering may change in a quote copied from the page source or another
# rendering: hyphens and minus signs, typographic quotes, non-breaking spaces, runs of
# spaces. Nothing else is forgiven.
_SAME = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2212": "-", "\u00ad": None,
                       "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                       "\u00a0": " "})
_BULLET = re.compile(r"^(?:•|\*|-)\s+")
TAG_MAX = 100   # a tag line is short; a longer line followed by a display is prose


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.translate(_SAME)).strip()


@dataclass(frozen=True)
class Sentence:
    index: int
    section: str          # "DESCRIPTION, read(2)": section, subsection, tags
    text: str


@dataclass
class _Section:
    name: str                                   # the top-level section
    text: str = ""                              # its paragraphs, normalised, joined
    spans: list[tuple[int, int, int]] = field(default_factory=list)  # start, end, sentence


@dataclass
class PageText:
    page: str
    sentences: list[Sentence]
    sections: list[_Section]

    def find(self, quote: str) -> list[tuple[str, list[int]]]:
        """Every place QUOTE appears: (top-level section, indices of the sentences it
        covers). Empty: the quote is not in this page (a stale citation)."""
        needle = normalise(quote)
        found = []
        if not needle:
            return found
        for section in self.sections:
            start = section.text.find(needle)
            while start >= 0:
                end = start + len(needle)
                hit = [i for s, e, i in section.spans if s < end and e > start]
                if not hit:   # only a tag or heading: the sentence it introduces
                    hit = [i for s, _, i in section.spans if s >= end][:1]
                if hit:
                    found.append((section.name, hit))
                start = section.text.find(needle, start + 1)
        return found


@functools.lru_cache(maxsize=1)
def _segmenter():
    import pysbd

    return pysbd.Segmenter(language="en", clean=False)


def _split(paragraph: str) -> list[str]:
    out: list[str] = []
    for piece in _segmenter().segment(paragraph):
        piece = normalise(piece)
        if out and piece and not any(c.isalnum() for c in piece):
            out[-1] += piece    # pysbd leaves the ")" of "(... epoll(7).)" on its own
        elif piece:
            out.append(piece)
    return out


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _join_comments(lines: list[str]) -> list[str]:
    """A C comment that a display wraps over several lines is one line again (the struct in
    signalfd(2)): otherwise its first line would pass for a tag. Only a more indented line
    continues it: the same struct leaves ssi_tid's comment unclosed."""
    out: list[str] = []
    for line in lines:
        if (out and out[-1].count("/*") > out[-1].count("*/") and line.strip()
                and _indent(line) > _indent(out[-1])):
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return out


def _is_tag(text: str, indent: int, following: int) -> bool:
    """A tagged paragraph's tag: short, followed by a more indented body, not code."""
    return (following > indent and len(text) <= TAG_MAX and not text.endswith((".", ":", ";"))
            and "/*" not in text)


def parse(page: str, rendered: str) -> PageText:
    lines = _join_comments([line.rstrip() for line in rendered.splitlines()])
    body = [i for i, line in enumerate(lines) if line.strip()]
    body = body[1:-1]    # the header and footer lines name the page, not a claim
    sentences: list[Sentence] = []
    sections: list[_Section] = []
    top: _Section | None = None
    sub: str | None = None
    tags: list[tuple[int, str]] = []            # open tags, by indent
    for n, i in enumerate(body):
        line, indent = lines[i], _indent(lines[i])
        text = normalise(line)
        if indent == 0:
            top, sub, tags = _Section(text), None, []
            sections.append(top)
            continue
        if top is None:
            continue
        if indent <= 3:
            sub, tags = text, []
            continue
        tags = [(d, t) for d, t in tags if d < indent]
        following = _indent(lines[body[n + 1]]) if n + 1 < len(body) else 0
        plain = normalise(_BULLET.sub("", line.strip()))
        if top.text:
            top.text += " "
        if _is_tag(text, indent, following):
            tags.append((indent, plain))
            top.text += plain
            continue
        where = ", ".join([top.name] + ([sub] if sub else []) + [t for _, t in tags])
        offset = len(top.text)
        top.text += plain
        cursor = 0
        for sentence in _split(plain):
            at = plain.find(sentence, cursor)
            at = cursor if at < 0 else at
            cursor = at + len(sentence)
            top.spans.append((offset + at, offset + cursor, len(sentences)))
            sentences.append(Sentence(len(sentences), where, sentence))
    return PageText(page, sentences, sections)
