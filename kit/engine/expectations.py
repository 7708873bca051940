"""Expectations: each kind compares one aspect of a Result and explains a mismatch.

Every checker returns a list of human sentences; empty means the kernel did what
the spec says. Add a kind here, in the schema (kit.spec.schema.EXPECT) and in
tests/test_expectations_fail.py, which proves the new kind can fail.
"""

from __future__ import annotations

import errno as _errno_mod
from typing import Any, Callable

from kit.adapter.libc import Result
from kit.spec import expressions as ex
from kit.spec import patterns


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "nothing"
    if isinstance(value, int) and value > 0xFFFF:
        return f"{value:#x} ({value})"
    return repr(value) if isinstance(value, str) else str(value)


def _outcome(result: Result) -> str:
    if result.errno:
        return f"failed with {result.errno}"
    return f"returned {_show(result.ret)}" + (
        f", value {_show(result.value)}" if result.value != result.ret else "")


def _errno(expected, result: Result, env) -> list[str]:
    names = [expected] if isinstance(expected, str) else list(expected)
    # Compare numbers: EWOULDBLOCK is EAGAIN, EOPNOTSUPP is ENOTSUP on Linux.
    if result.errno and getattr(_errno_mod, result.errno, None) in {
            getattr(_errno_mod, n, None) for n in names}:
        return []
    want = " or ".join(names)
    return [f"expected failure with {want}, but the call {_outcome(result)}"]


def _ok(expected, result: Result, env) -> list[str]:
    if bool(expected) == result.ok:
        return []
    return [f"expected the call to {'succeed' if expected else 'fail'}, "
            f"but it {_outcome(result)}"]


def _returns(expected, result: Result, env) -> list[str]:
    want = ex.evaluate(expected, env)
    if result.ok and result.ret == want:
        return []
    return [f"expected a return of {_show(want)}, but the call {_outcome(result)}"]


def _equal(want: Any, got: Any) -> bool:
    # True == 1 in Python; a spec that says `true` means a boolean.
    return want == got and isinstance(want, bool) == isinstance(got, bool)


def compare_value(want: Any, got: Any, what: str) -> list[str]:
    if _equal(want, got):
        return []
    return [f"expected {what} {_show(want)}, got {_show(got)}"]


def compare_written(expected: Any, got: Any, env, what: str) -> list[str]:
    """compare_value for a value as the spec wrote it: an exact mask written by name
    (O_RDWR|O_NONBLOCK, EPOLLIN|EPOLLOUT) is named and shown in hex with the bits that
    differ, not as two decimal numbers."""
    want = ex.evaluate(expected, env)
    out = compare_value(want, got, what)
    if out and _named_mask(expected) and isinstance(want, int) and isinstance(got, int) \
            and not isinstance(got, bool):
        missing, extra = want & ~got, got & ~want
        differ = ", ".join(f"{kind} {bits:#x}" for kind, bits in
                           (("missing", missing), ("extra", extra)) if bits)
        return [f"expected {what} {ex.describe(expected)} ({want:#x}), got {got:#x} ({differ})"]
    return out


# Constants that are bits of a mask (a signal or clock number is not).
_MASK_PREFIXES = ("O_", "EPOLL", "POLL", "FD_", "EFD_", "TFD_", "SFD_")


def _named_mask(expected: Any) -> bool:
    names = expected if isinstance(expected, list) else [expected]
    return bool(names) and all(isinstance(n, str) and ex.NAME.match(n) and
                               n.startswith(_MASK_PREFIXES) for n in names)


def _value(expected, result: Result, env) -> list[str]:
    return compare_written(expected, result.value, env, "value")


def check_bits(spec: dict, actual: Any, env, what: str = "value") -> list[str]:
    if not isinstance(actual, int):
        return [f"expected {what} to be a bit mask, got {_show(actual)}"]
    out = []
    if "set" in spec:
        mask = ex.evaluate(spec["set"], env)
        if actual & mask != mask:
            out.append(f"expected bits {ex.describe(spec['set'])} set in {what}; "
                       f"{what} is {actual:#x}, missing {mask & ~actual:#x}")
    if "clear" in spec:
        mask = ex.evaluate(spec["clear"], env)
        if actual & mask:
            out.append(f"expected bits {ex.describe(spec['clear'])} clear in {what}; "
                       f"{what} is {actual:#x}, unexpectedly set {actual & mask:#x}")
    return out


def _bits(expected, result: Result, env) -> list[str]:
    return check_bits(expected, result.value, env)


def check_matches(pattern: str, actual: Any, what: str = "value") -> list[str]:
    # bounded in time: a runaway pattern raises PatternTimeout, a kit error
    if patterns.search(pattern, str(actual)):
        return []
    return [f"expected {what} to match /{pattern}/, got {_show(actual)}"]


def _matches(expected, result: Result, env) -> list[str]:
    return check_matches(expected, result.value)


def check_fields(spec: dict, actual: Any, env, prefix: str = "") -> list[str]:
    if not isinstance(actual, dict):
        return [f"expected a mapping with fields {sorted(map(str, spec))}, got {_show(actual)}"]
    out = []
    for key, want in spec.items():
        name = f"{prefix}{key}"
        present = key in actual
        if isinstance(want, dict) and not ex.is_arithmetic(want):
            if "present" in want and want["present"] != present:
                out.append(f"expected field {name} to be "
                           f"{'present' if want['present'] else 'absent'}")
                continue
            if not present:
                if set(want) - {"present"}:
                    out.append(f"expected field {name}, which is absent "
                               f"(fields: {', '.join(map(str, actual))})")
                continue
            got = actual[key]
            if "value" in want:
                out += compare_written(want["value"], got, env, f"field {name}")
            if "bits" in want:
                out += check_bits(want["bits"], got, env, f"field {name}")
            if "matches" in want:
                out += check_matches(want["matches"], got, f"field {name}")
            for kind in ORDER_KINDS:
                if kind in want:
                    out += check_order(kind, want[kind], got, env, f"field {name}")
            if "not" in want:
                out += check_not(want["not"], got, env, f"field {name}")
            if "fields" in want:
                out += check_fields(want["fields"], got, env, f"{name}.")
        elif not present:
            out.append(f"expected field {name} = {_show(ex.evaluate(want, env))}, "
                       f"but it is absent (fields: {', '.join(map(str, actual))})")
        else:
            out += compare_written(want, actual[key], env, f"field {name}")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _bound(kind: str, expr: Any, env) -> int | float:
    value = ex.evaluate(expr, env)
    if not _is_number(value):
        # The loader admits only numeric forms, so only a $reference can get here: a spec
        # bug, not the target's answer, hence an error rather than a deviation.
        raise TypeError(f"{kind}: the bound {ex.describe(expr)} is {_show(value)}, "
                        f"not a number")
    return value


def check_order(kind: str, expected: Any, actual: Any, env, what: str = "value") -> list[str]:
    """at_least / at_most / between (inclusive) on a number."""
    if kind == "between":
        low, high = (_bound(kind, e, env) for e in expected)
        wanted = f"between {low} and {high}"
        holds = _is_number(actual) and low <= actual <= high
        if low > high:
            wanted += " (an empty range: the low bound is above the high one)"
    else:
        bound = _bound(kind, expected, env)
        wanted = f"{kind.replace('_', ' ')} {bound}"
        holds = _is_number(actual) and (actual >= bound if kind == "at_least"
                                        else actual <= bound)
    if holds:
        return []
    # Decimal on both sides: an ordering is read by magnitude (nanoseconds, counts).
    got = actual if _is_number(actual) else f"{_show(actual)}, which is not a number"
    return [f"expected {what} {wanted}, got {got}"]


def check_not(expected: Any, actual: Any, env, what: str = "value") -> list[str]:
    want = ex.evaluate(expected, env)
    if not _equal(want, actual):
        return []
    return [f"expected {what} other than {_show(want)}, got {_show(actual)}"]


ORDER_KINDS = ("at_least", "at_most", "between")


def _order(kind: str):
    return lambda expected, result, env: check_order(kind, expected, result.value, env)


def _not(expected, result: Result, env) -> list[str]:
    return check_not(expected, result.value, env)


def _fields(expected, result: Result, env) -> list[str]:
    return check_fields(expected, result.value, env)


# Where /proc cannot show a thread asleep in its call (some sandboxes), `asleep: true`
# falls back to time: the waker then waits this long after the call began (interpreter).
ASLEEP_FALLBACK = 0.05


def _blocks(expected, result: Result, env) -> list[str]:
    if "asleep" in expected:
        if result.seen_asleep or (result.seen_asleep is None and
                                  result.duration >= ASLEEP_FALLBACK):
            return []
        return [f"expected the call to block (seen asleep in the kernel while it ran, or "
                f"lasting {ASLEEP_FALLBACK:g}s where /proc cannot show that), but it returned "
                f"after {result.duration:.4f}s and was never seen asleep"]
    # A bound may follow a drawn timeout ({div: [$timeout, 1000]}): no fixed floor that a
    # wait cut short, but still longer than it, would pass.
    floor = _bound("blocks", expected["at_least"], env)
    if result.duration >= floor:
        return []
    written = expected["at_least"]
    source = "" if isinstance(written, (int, float)) else f" ({ex.describe(written)})"
    return [f"expected the call to block for at least {floor:g}s{source}, but it returned "
            f"after {result.duration:.4f}s"]


def _returns_within(expected, result: Result, env) -> list[str]:
    # The claim is that the call does not wait (for long): time the thread spent ready to
    # run while other work had the CPUs is the machine's load, so it does not count.
    waited = max(0.0, result.duration - result.queued)
    if waited <= expected:
        return []
    took = f"{result.duration:.4f}s"
    if result.queued:
        took += f", {result.queued:.4f}s of it waiting for a CPU"
    return [f"expected the call to return within {expected}s, it took {took}"]


CHECKS: dict[str, Callable[[Any, Result, dict], list[str]]] = {
    "errno": _errno, "ok": _ok, "returns": _returns, "value": _value, "bits": _bits,
    "fields": _fields, "matches": _matches, "blocks": _blocks,
    "returns_within": _returns_within, "not": _not,
    **{kind: _order(kind) for kind in ORDER_KINDS},
}

# Kinds that describe a successful call: if the call failed, say that once, plainly.
_SUCCESS_KINDS = {"returns", "value", "bits", "fields", "matches", "not", *ORDER_KINDS}


def check(expect: dict, result: Result, env: dict) -> list[str]:
    if "errno" not in expect and "ok" not in expect and result.errno and \
            _SUCCESS_KINDS & set(expect):
        return [f"expected the call to succeed, but it failed with {result.errno}"]
    out: list[str] = []
    for kind, expected in expect.items():
        out += CHECKS[kind](expected, result, env)
    return out


def _describe(kind: str, expected: Any) -> str:
    if kind == "between":
        # ex.describe would render a list as a bitwise OR (LO|HI)
        return "[" + ", ".join(ex.describe(e) for e in expected) + "]"
    if kind == "fields":
        return "{" + ", ".join(
            f"{name}: {describe(want, braces=True)}"
            if isinstance(want, dict) and not ex.is_arithmetic(want) else
            f"{name}: {ex.describe(want)}" for name, want in expected.items()) + "}"
    return ex.describe(expected)


def describe(expect: dict, braces: bool = False) -> str:
    """An expectation as the spec wrote it, for traces: `at_least 20, fields {...}`."""
    text = ", ".join(f"{kind}{':' if braces else ''} {_describe(kind, want)}"
                     for kind, want in expect.items())
    return "{" + text + "}" if braces else text
