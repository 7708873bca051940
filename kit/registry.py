"""What a spec may name: adapter operations and symbolic constants.

Adapter modules register themselves here at import time; the spec schema, the
interpreter and `kit list` all read from this one table. A spec can only ever
call what is registered, which is what keeps YAML free of executable code.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

# Argument kinds an operation can declare. Each maps to a JSON Schema fragment
# (see kit.spec.schema) and to a conversion in the interpreter.
ARG_KINDS = ("int", "fd", "flags", "seconds", "str", "bool", "list", "any")


@dataclass(frozen=True)
class Operation:
    name: str
    fn: Callable
    args: dict[str, str]          # argument name -> kind
    required: tuple[str, ...]
    defaults: dict
    doc: str
    family: str
    blocking: bool                # may block: run under the watchdog bound

    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else self.name


OPERATIONS: dict[str, Operation] = {}
CONSTANTS: dict[str, int] = {}


def operation(name: str | None = None, *, family: str = "common", blocking: bool = False,
              **kinds: str):
    """Register an adapter function as a spec operation.

    Argument kinds are given as keywords; required arguments are those without a
    default in the function's signature.
    """

    def register(fn: Callable) -> Callable:
        op_name = name or fn.__name__
        sig = inspect.signature(fn)
        for arg in sig.parameters:
            if arg not in kinds:
                raise TypeError(f"operation {op_name}: argument {arg!r} has no declared kind")
        for kind in kinds.values():
            if kind not in ARG_KINDS:
                raise TypeError(f"operation {op_name}: unknown kind {kind!r}")
        required = tuple(a for a, p in sig.parameters.items() if p.default is p.empty)
        defaults = {a: p.default for a, p in sig.parameters.items() if p.default is not p.empty}
        if op_name in OPERATIONS:
            raise ValueError(f"operation {op_name} registered twice")
        OPERATIONS[op_name] = Operation(op_name, fn, dict(kinds), required, defaults,
                                        fn.__doc__ or "", family, blocking)
        return fn

    return register


def constants(**values: int) -> None:
    for key, val in values.items():
        if key in CONSTANTS and CONSTANTS[key] != val:
            raise ValueError(f"constant {key} registered with two values")
        CONSTANTS[key] = val
