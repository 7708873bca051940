"""The shape of a model program (kit.model.program), checked before a replay runs one.

A program in `kit replay ID --params '{"program": [...]}'` is hand-editable JSON. An
operation the models do not know, an argument of the wrong type or outside what the
stateful tests generate, or a name that no earlier operation created would otherwise
surface as a kit crash or, worse, as a kernel that disagrees with its model.
"""

from __future__ import annotations

from typing import Any, Callable

from kit.model.program import CLOCKS
from kit.model.signalfd import SIGNALS

# Longer than any generated program (kit.engine.runner.STEPS_PER_PROGRAM, about 100).
MAX_OPERATIONS = 1000

EVENTFD, TIMERFD, SIGNALFD, EPOLL = "eventfd", "timerfd", "signalfd", "epoll"
PIPE, SOCKET = "pipe", "socket"        # either end of a pipe; either socket of a pair
FILES = (EVENTFD, TIMERFD, SIGNALFD)
CHANNELS = (PIPE, SOCKET)
WATCHABLE = (*FILES, *CHANNELS, EPOLL)
# In a kind tuple: a name an earlier operation closed is accepted too (EPOLL_CTL_DEL
# through a closed descriptor's number).
CLOSED = "closed"
# Open at once: chains of instances stay below the nesting limit (epoll.nesting.* check it).
MAX_EPOLLS = 4


def _int(lo: int, hi: int) -> Callable[[Any], str | None]:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            return f"an integer from {lo} to {hi:#x}"
        return None
    return check


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"one of {', '.join(choices)}"


def _names(choices) -> Callable[[Any], str | None]:
    def check(value):
        if not isinstance(value, list) or not all(v in choices for v in value) \
                or len(set(value)) != len(value):
            return f"a list of distinct names from {', '.join(sorted(choices))}"
        return None
    return check


def _bool(value) -> str | None:
    return None if isinstance(value, bool) else "true or false"


# A name argument: ("new",) for the object an operation creates, else the kinds it may name.
NEW = ("new",)
# operation -> argument -> NEW, a tuple of kinds, or a value check; "?" marks optional ones
SHAPES: dict[str, dict[str, Any]] = {
    "eventfd": {"id": NEW, "initval": _int(0, 0xFFFFFFFF), "semaphore": _bool},
    "timerfd": {"id": NEW, "clock": _one_of(*CLOCKS)},
    "signalfd": {"id": NEW, "mask": _names(SIGNALS)},
    "epoll": {"id": NEW},
    "pipe": {"id": NEW, "peer": NEW},
    "socketpair": {"id": NEW, "peer": NEW},
    "dup": {"obj": (*FILES, *CHANNELS), "id": NEW},
    "write_bytes": {"file": CHANNELS, "size": _int(1, 16)},
    "read_bytes": {"file": CHANNELS, "size": _int(1, 64)},
    "shutdown": {"file": (SOCKET,)},
    "fork": {"file": CHANNELS, "then": _one_of("close", "write_bytes")},
    "write": {"file": (EVENTFD,), "value": _int(0, 0xFFFFFFFFFFFFFFFF)},
    "read": {"file": FILES, "records?": _int(1, 64)},
    "poll": {"file": WATCHABLE},
    "add": {"ep": (EPOLL,), "file": WATCHABLE,
            "events": _names(("EPOLLIN", "EPOLLOUT", "EPOLLRDHUP", "EPOLLPRI")),
            "et?": _bool, "oneshot?": _bool},
    "del": {"ep": (EPOLL,), "file": (*WATCHABLE, CLOSED)},
    "wait": {"ep": (EPOLL,), "maxevents?": _int(1, 64), "timeout?": _int(0, 50)},
    "waiter": {"ep": (EPOLL,), "timeout": _int(1, 50), "maxevents?": _int(1, 64)},
    "close": {"obj": WATCHABLE},
    "settime": {"file": (TIMERFD,), "when": _one_of("now", "later", "never"),
                "periodic?": _bool, "abstime?": _bool},
    "gettime": {"file": (TIMERFD,)},
    "signal": {"sig": _one_of(*sorted(SIGNALS)), "value": _int(0, 0x7FFFFFFF)},
    "setmask": {"file": (SIGNALFD,), "mask": _names(SIGNALS)},
}
SHAPES["mod"] = SHAPES["add"]

# Operations each model's stateful test generates (kit.model.machine).
_EVENTFD_EPOLL = {"eventfd", "epoll", "dup", "write", "read", "poll", "add", "mod", "del",
                  "wait", "close"}
_CHANNELS = {"pipe", "socketpair", "write_bytes", "read_bytes", "shutdown", "fork"}
OPERATIONS_OF = {"eventfd_epoll": _EVENTFD_EPOLL,
                 "timerfd_signalfd_epoll": set(SHAPES) - _CHANNELS - {"waiter"},
                 "epoll_tree": _EVENTFD_EPOLL,
                 "epoll_waiters": _EVENTFD_EPOLL | {"waiter"},
                 "pipes_sockets_epoll": _EVENTFD_EPOLL | _CHANNELS}


def program_problem(model: str, params: Any) -> str | None:
    """Why `params` is not a program this model's replay can run (None: it is)."""
    if not isinstance(params, dict) or set(params) != {"program"}:
        return 'a model behaviour takes exactly {"program": [operation, ...]}'
    program = params["program"]
    if not isinstance(program, list):
        return "program must be a list of operations"
    if len(program) > MAX_OPERATIONS:
        return f"program has {len(program)} operations, more than {MAX_OPERATIONS}"
    allowed = OPERATIONS_OF.get(model, set(SHAPES))
    open_objects: dict[str, str] = {}     # name -> kind
    closed: set[str] = set()
    for i, op in enumerate(program):
        why = _operation_problem(op, allowed, open_objects, closed)
        if why:
            return f"program operation {i + 1}: {why}"
    return None


def _operation_problem(op: Any, allowed: set[str], open_objects: dict[str, str],
                       closed: set[str]) -> str | None:
    if not isinstance(op, dict) or not isinstance(op.get("op"), str):
        return f'an operation is an object with "op", got {op!r}'
    name = op["op"]
    if name not in allowed:
        return f"unknown operation {name!r} (this model's: {', '.join(sorted(allowed))})"
    if "efd" in op:  # the older spelling of "file"
        op = {("file" if k == "efd" else k): v for k, v in op.items()}
    shape = SHAPES[name]
    args = {k.rstrip("?"): v for k, v in shape.items()}
    unknown = [k for k in op if k != "op" and k not in args]
    if unknown:
        return f"{name}: unknown argument {unknown[0]!r} (takes {', '.join(args)})"
    for key, check in shape.items():
        arg = key.rstrip("?")
        if arg not in op:
            if key.endswith("?"):
                continue
            return f"{name}: missing argument {arg!r}"
        value = op[arg]
        if check is NEW:
            if not isinstance(value, str) or not value:
                return f"{name}: {arg} must be a name, got {value!r}"
            if value in open_objects:
                return f"{name}: {arg} {value!r} names an object that is already open"
        elif isinstance(check, tuple):
            kind = open_objects.get(value) if isinstance(value, str) else None
            if kind is None and CLOSED in check and value in closed:
                continue
            if kind not in check:
                what = f"{'an' if kind[0] in 'ae' else 'a'} {kind}" if kind else \
                    "no open object"
                kinds = " or ".join(k for k in check if k != CLOSED)
                return (f"{name}: {arg} {value!r} names {what}; it must name an open "
                        f"{kinds}{', or one closed before' if CLOSED in check else ''}")
        else:
            why = check(value)
            if why:
                return f"{name}: {arg} must be {why}, got {value!r}"
    if name == EPOLL and list(open_objects.values()).count(EPOLL) >= MAX_EPOLLS:
        return f"epoll: more than {MAX_EPOLLS} epoll instances open at once"
    for arg in ("id", "peer"):
        if arg in op and op[arg] in closed:
            return f"{name}: {arg} {op[arg]!r} names an object closed before; names are not reused"
    if name in ("pipe", "socketpair") and op["id"] == op["peer"]:
        return f"{name}: id and peer must be two names"
    _track(name, op, open_objects, closed)
    return None


def _track(name: str, op: dict, open_objects: dict[str, str], closed: set[str]) -> None:
    if name in (*FILES, EPOLL):
        open_objects[op["id"]] = name
    elif name in ("pipe", "socketpair"):
        open_objects[op["id"]] = open_objects[op["peer"]] = PIPE if name == "pipe" else SOCKET
    elif name == "dup":
        open_objects[op["id"]] = open_objects[op["obj"]]
    elif name == "close":
        del open_objects[op["obj"]]
        closed.add(op["obj"])
