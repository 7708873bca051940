"""Reference models written from the man pages, and random operation sequences that
run against the kernel and the model side by side (model-based testing).

A behaviour in specs/ names a model with `model: NAME`; its counterexample is the
shortest program (a JSON list of operations) on which kernel and model disagree, and
`kit replay ID --params '{"program": [...]}'` runs exactly that program again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ModelTest:
    machine: str        # "module:Class" of the RuleBasedStateMachine, imported on demand
    summary: str


MODELS: dict[str, ModelTest] = {
    "eventfd_epoll": ModelTest(
        "kit.model.machine:EventfdEpollMachine",
        "eventfd counters (plain and semaphore) watched by epoll instances: LT, ET, "
        "ONESHOT, ADD/MOD/DEL, close; every operation compared with the reference model"),
    "timerfd_signalfd_epoll": ModelTest(
        "kit.model.machine:TimerfdSignalfdEpollMachine",
        "the eventfd/epoll programs joined by timerfds (set to expire at once, in an hour, "
        "or never; read, polled, gettime) and signalfds (signals queued to the thread, mask "
        "updates, reads of several records) in the same epoll instances"),
    "epoll_tree": ModelTest(
        "kit.model.machine:EpollTreeMachine",
        "the eventfd/epoll programs with epoll instances inside epoll instances (readiness "
        "propagating up, LT/ET/ONESHOT outer items, ELOOP on a cycle), EPOLL_CTL_DEL through "
        "a closed descriptor's number, and waits with room for fewer events than are ready "
        "(round robin)"),
    "pipes_sockets_epoll": ModelTest(
        "kit.model.machine:PipesSocketsEpollMachine",
        "pipes and UNIX stream socket pairs in epoll instances: bytes written and read, ends "
        "closed and duplicated (in the program, or in a forked child that closes or writes "
        "its copy), sockets shut down for writing; EPOLLIN, EPOLLOUT, EPOLLHUP, "
        "EPOLLERR and EPOLLRDHUP compared with the model"),
    "epoll_waiters": ModelTest(
        "kit.model.machine:EpollWaitersMachine",
        "the nested-instance programs with waits that block: a thread blocked in epoll_wait, "
        "woken (or timing out) after the program's next operation, and waits with a timeout"),
}

# The operations a model program is made of (each a method of kit.model.program.Program),
# for specs that name one, e.g. a known deviation's `operation`.
MODEL_OPERATIONS = ("eventfd", "timerfd", "signalfd", "epoll", "write", "read", "poll",
                    "settime", "gettime", "signal", "setmask", "add", "mod", "del", "wait",
                    "dup", "close", "pipe", "socketpair", "write_bytes", "read_bytes",
                    "shutdown", "waiter", "fork")


def load_machine(name: str):
    module, _, cls = MODELS[name].machine.partition(":")
    import importlib

    return getattr(importlib.import_module(module), cls)


def replayer(name: str) -> Callable:
    from kit.model.program import run_program

    return run_program
