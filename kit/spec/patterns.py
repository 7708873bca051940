"""Regular expressions from specs (`matches:`): compiled when the spec loads, matched with a
time limit.

A spec's pattern is the kit's code, not the target's: a pattern that backtracks without end
must end as a kit error naming the pattern, never run until the behaviour's hard limit and
be reported as a target that ignored the watchdog. The `regex` package takes a timeout on
every match; its default syntax (VERSION0) is that of the standard `re`.
"""

from __future__ import annotations

import functools

import regex

# Values matched are a link text or an fdinfo field: microseconds. A second is a runaway.
MATCH_TIMEOUT = 1.0


class PatternTimeout(Exception):
    """A spec's pattern took longer than MATCH_TIMEOUT: a kit (spec) error."""


@functools.cache
def compiled(pattern: str) -> regex.Pattern:
    """The compiled pattern; raises regex.error (with .pos) for a bad one. Cached, so a
    pattern compiled while loading is not compiled again in the forked checker."""
    return regex.compile(pattern)


def search(pattern: str, text: str, timeout: float | None = None) -> bool:
    timeout = MATCH_TIMEOUT if timeout is None else timeout
    try:
        return compiled(pattern).search(text, timeout=timeout) is not None
    except TimeoutError:
        raise PatternTimeout(f"the spec's regular expression /{pattern}/ took longer than "
                             f"{timeout}s on a value of {len(text)} characters: a "
                             f"pattern that backtracks without end (a spec error, not the "
                             f"target's)") from None
