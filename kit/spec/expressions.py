"""Values in specs: literals, $references, CONSTANTS and a few arithmetic forms.

Deliberately tiny and closed: nothing in a spec is ever handed to eval().
"""

from __future__ import annotations

import functools
import operator
import re
from typing import Any, Iterator

from kit.registry import CONSTANTS

REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z0-9_-]+)*)$")
NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")

_ARITH = {
    "add": lambda xs: sum(xs),
    "sub": lambda xs: functools.reduce(operator.sub, xs),
    "or": lambda xs: functools.reduce(operator.or_, xs, 0),
    # bitwise AND: the part of a drawn events mask that a ready file reports
    "and": lambda xs: functools.reduce(operator.and_, xs),
    "mul": lambda xs: functools.reduce(operator.mul, xs),   # e.g. a waiter's own delay
    "min": min,
    "max": max,
    # true division: a timeout drawn in milliseconds bounds a duration in seconds
    "div": lambda xs: functools.reduce(operator.truediv, xs),
}
_PREDICATES = {"eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
               "gt": operator.gt, "ge": operator.ge}


class UnboundReference(Exception):
    pass


class MissingField(UnboundReference):
    """An earlier result lacks a field the spec reads: the target's answer, not a spec bug."""


def lookup(name: str, path: str, env: dict) -> Any:
    if name not in env:
        raise UnboundReference(f"${name} is not bound")
    value = env[name]
    for part in filter(None, path.split(".")):
        if isinstance(value, dict):
            key = int(part) if part.isdigit() and int(part) in value else part
            if key not in value:
                raise MissingField(f"${name}{path}: the result has no field {part!r} "
                                   f"(fields: {', '.join(map(str, value))})")
            value = value[key]
        else:
            raise MissingField(f"${name}{path}: the result {value!r} has no field {part!r}")
    return value


def is_arithmetic(expr: Any) -> bool:
    return isinstance(expr, dict) and len(expr) == 1 and next(iter(expr)) in _ARITH


def evaluate(expr: Any, env: dict) -> Any:
    if isinstance(expr, str):
        ref = REF.match(expr)
        if ref:
            return lookup(ref.group(1), ref.group(2), env)
        if NAME.match(expr) and expr in CONSTANTS:
            return CONSTANTS[expr]
        return expr
    if isinstance(expr, list):
        return functools.reduce(operator.or_, (evaluate(e, env) for e in expr), 0)
    if isinstance(expr, dict) and len(expr) == 1:
        (form, items), = expr.items()
        if form in _ARITH:
            return _ARITH[form]([evaluate(e, env) for e in items])
    if isinstance(expr, dict):
        # a literal mapping (an expected value): its $references are resolved, its other
        # leaves (names, lists) stay as written
        return {key: _references(value, env) for key, value in expr.items()}
    return expr


def _references(expr: Any, env: dict) -> Any:
    if isinstance(expr, str) and REF.match(expr):
        return evaluate(expr, env)
    if isinstance(expr, dict):
        return evaluate(expr, env)
    if isinstance(expr, list):
        return [_references(item, env) for item in expr]
    return expr


def holds(predicate: dict, env: dict) -> bool:
    (name, (left, right)), = predicate.items()
    return _PREDICATES[name](evaluate(left, env), evaluate(right, env))


def walk(expr: Any) -> Iterator[str]:
    """Every string leaf of an expression: references and constant names."""
    if isinstance(expr, str):
        yield expr
    elif isinstance(expr, list):
        for item in expr:
            yield from walk(item)
    elif isinstance(expr, dict):
        for value in expr.values():
            yield from walk(value)


def describe(expr: Any) -> str:
    """A human rendering of an expression, as a spec author would write it."""
    if isinstance(expr, list):
        return "|".join(describe(e) for e in expr) or "0"
    if isinstance(expr, dict) and len(expr) == 1 and next(iter(expr)) in _ARITH:
        (form, items), = expr.items()
        return f"{form}({', '.join(describe(i) for i in items)})"
    if isinstance(expr, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in expr.items()) + "}"
    if isinstance(expr, int) and not isinstance(expr, bool) and expr > 0xFFFF:
        return hex(expr)
    return str(expr)
