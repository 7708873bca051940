"""Every kind of expectation can fail, on the real kernel, with a message that explains it.

Each case is a behaviour with a deliberately WRONG expectation and its corrected twin: the
wrong one must deviate at the right line with expected-against-actual text, the right one
must conform (so the check is not vacuous). The step whose expectation is checked carries a
`# CHECK` comment; its line is what the trace and the message must name.

Cases run in-process through kit.engine.interpreter.Run; one subprocess run of the pytest
plugin over all of them checks the failure text a user sees (citation, spec line, trace).
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest
from helpers import QUOTE, behaviour, line_of, run_one, run_plugin, spec_text, write_spec

from kit.engine.interpreter import CONFORMS, DEVIATES, TIMEOUT
from kit.engine.target import Target

NONBLOCK5 = """\
- eventfd: {initval: 5, flags: EFD_NONBLOCK}
  as: efd
"""
EMPTY = """\
- eventfd: {initval: 0, flags: EFD_NONBLOCK}
  as: efd
"""


@dataclass
class Case:
    wrong: str            # the steps, with `# CHECK` on the step whose expectation is wrong
    right: str            # the same steps with the true expectation
    says: tuple           # fragments the deviation message must contain
    where: str = "main"   # main, a thread name, or child


def _steps(setup: str, check: str) -> str:
    return "steps:\n" + "\n".join("  " + line for line in (setup + check).splitlines())


def case(setup: str, wrong: str, right: str, *says: str, where: str = "main") -> Case:
    return Case(_steps(setup, wrong), _steps(setup, right), says, where)


CASES = {
    "errno, other errno": case(
        "", "- eventfd: {initval: 0, flags: 0x10}  # CHECK\n  expect: {errno: EBADF}\n",
        "- eventfd: {initval: 0, flags: 0x10}  # CHECK\n  expect: {errno: EINVAL}\n",
        "expected failure with EBADF", "failed with EINVAL"),
    "errno, call succeeded": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {errno: EAGAIN}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {returns: 8}\n"
        "- read_u64: {fd: $efd}\n  expect: {errno: EAGAIN}\n",
        "expected failure with EAGAIN", "returned 8", "value 5"),
    "errno, list": case(
        "", "- eventfd: {flags: 0x10}  # CHECK\n  expect: {errno: [EBADF, EPERM]}\n",
        "- eventfd: {flags: 0x10}  # CHECK\n  expect: {errno: [EBADF, EINVAL]}\n",
        "expected failure with EBADF or EPERM", "failed with EINVAL"),
    "ok true": case(
        "", "- eventfd: {flags: 0x10}  # CHECK\n  expect: {ok: true}\n",
        "- eventfd: {flags: 0x10}  # CHECK\n  expect: {ok: false}\n",
        "expected the call to succeed", "failed with EINVAL"),
    "ok false": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {ok: false}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {ok: true}\n",
        "expected the call to fail", "returned 8"),
    "returns": case(
        NONBLOCK5, "- write_u64: {fd: $efd, value: 1}  # CHECK\n  expect: {returns: 4}\n",
        "- write_u64: {fd: $efd, value: 1}  # CHECK\n  expect: {returns: 8}\n",
        "expected a return of 4", "returned 8"),
    "returns, call failed": case(
        EMPTY, "- read_u64: {fd: $efd}  # CHECK\n  expect: {returns: 8}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {errno: EAGAIN}\n",
        "expected the call to succeed, but it failed with EAGAIN"),
    "value, a mapping with references": case(
        "- eventfd: {initval: 5, flags: EFD_NONBLOCK}\n  as: efd\n- epoll_create1: {}\n"
        "  as: ep\n- epoll_ctl: {epfd: $ep, op: EPOLL_CTL_ADD, fd: $efd, events: EPOLLIN, "
        "data: 3}\n- compute: {value: 4}\n  as: out\n- compute: {value: 1}\n  as: inb\n",
        "- epoll_wait: {epfd: $ep, timeout: 0}  # CHECK\n  expect: {value: {3: $out}}\n",
        "- epoll_wait: {epfd: $ep, timeout: 0}  # CHECK\n  expect: {value: {3: $inb}}\n",
        "expected value", "4"),
    "value": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {value: 6}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {value: 5}\n",
        "expected value 6, got 5"),
    "value, arithmetic": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {value: {add: [$efd, 1000]}}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {value: {sub: [10, 5]}}\n",
        "expected value", "got 5"),
    "value, boolean is not a number": case(
        NONBLOCK5, "- fd_is_open: {fd: $efd}  # CHECK\n  expect: {value: 1}\n",
        "- fd_is_open: {fd: $efd}  # CHECK\n  expect: {value: true}\n",
        "expected value 1, got true"),
    "at_least": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {at_least: 6}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {returns: 8, at_least: 5}\n",
        "expected value at least 6, got 5"),
    "at_least, arithmetic bound": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {at_least: {add: [$efd, 5]}}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {at_least: {sub: [$efd, $efd]}}\n",
        "expected value at least ", "got 5"),
    "at_most": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {at_most: 4}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {at_most: {sub: [6, 1]}}\n",
        "expected value at most 4, got 5"),
    "between, below": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {between: [6, 0xffffffff]}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {between: [5, 0xffffffff]}\n",
        "expected value between 6 and 4294967295, got 5"),
    "between, above": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {between: [0, 4]}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {between: [5, 5]}\n",
        "expected value between 0 and 4, got 5"),
    "between, call failed": case(
        EMPTY, "- read_u64: {fd: $efd}  # CHECK\n  expect: {between: [0, 10]}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {errno: EAGAIN}\n",
        "expected the call to succeed, but it failed with EAGAIN"),
    "at_least, boolean is not a number": case(
        NONBLOCK5, "- fd_is_open: {fd: $efd}  # CHECK\n  expect: {at_least: 1}\n",
        "- fd_is_open: {fd: $efd}  # CHECK\n  expect: {value: true}\n",
        "expected value at least 1, got true, which is not a number"),
    "at_most, text is not a number": case(
        NONBLOCK5, "- fd_link: {fd: $efd}  # CHECK\n  expect: {at_most: 100}\n",
        "- fd_link: {fd: $efd}  # CHECK\n  expect: {not: 'pipe:[1]'}\n",
        "expected value at most 100, got 'anon_inode:[eventfd]', which is not a number"),
    "not": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {not: 5}\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {not: 0}\n",
        "expected value other than 5, got 5"),
    "not, boolean is not a number": case(
        NONBLOCK5, "- fd_is_open: {fd: $efd}  # CHECK\n  expect: {not: true}\n",
        "- fd_is_open: {fd: $efd}  # CHECK\n  expect: {not: 1}\n",
        "expected value other than true, got true"),
    "bits set": case(
        EMPTY, "- poll: {fd: $efd, events: [POLLIN, POLLOUT]}  # CHECK\n"
               "  expect: {bits: {set: POLLIN}}\n",
        "- poll: {fd: $efd, events: [POLLIN, POLLOUT]}  # CHECK\n"
        "  expect: {bits: {set: POLLOUT}}\n",
        "expected bits POLLIN set in value", "value is 0x4", "missing 0x1"),
    "bits clear": case(
        EMPTY, "- poll: {fd: $efd, events: [POLLIN, POLLOUT]}  # CHECK\n"
               "  expect: {bits: {clear: [POLLOUT, POLLERR]}}\n",
        "- poll: {fd: $efd, events: [POLLIN, POLLOUT]}  # CHECK\n"
        "  expect: {bits: {clear: [POLLIN, POLLERR]}}\n",
        "expected bits POLLOUT|POLLERR clear in value", "unexpectedly set 0x4"),
    "bits on a mapping": case(
        EMPTY, "- pipe2: {}  # CHECK\n  expect: {bits: {set: 1}}\n",
        "- pipe2: {}  # CHECK\n  expect: {fields: {read: {bits: {clear: 0x80000000}}}}\n",
        "expected value to be a bit mask"),
    "fields, plain": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {eventfd-count: 6}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {eventfd-count: 5}}\n",
        "expected field eventfd-count 6, got 5"),
    "fields, absent": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {tfd: 3}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {eventfd-semaphore: 0}}\n",
        "expected field tfd = 3, but it is absent", "eventfd-count"),
    "fields, nested value": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n"
                   "  expect: {fields: {eventfd-semaphore: {value: 1}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {eventfd-semaphore: {value: 0}}}\n",
        "expected field eventfd-semaphore 1, got 0"),
    "fields, nested bits": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n"
                   "  expect: {fields: {flags: {bits: {set: O_CLOEXEC}}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n"
        "  expect: {fields: {flags: {bits: {set: [O_NONBLOCK, O_RDWR], clear: O_CLOEXEC}}}}\n",
        "expected bits O_CLOEXEC set in field flags", "missing 0x80000"),
    "fields, nested matches": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n"
                   "  expect: {fields: {pos: {matches: '^[1-9]'}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {pos: {matches: '^0$'}}}\n",
        "expected field pos to match /^[1-9]/, got 0"),
    "fields, nested present": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n"
                   "  expect: {fields: {tfd: {present: true}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n"
        "  expect: {fields: {tfd: {present: false}, eventfd-count: {present: true}}}\n",
        "expected field tfd to be present"),
    "fields, nested absent": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n"
                   "  expect: {fields: {eventfd-count: {present: false}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {eventfd-count: {present: true}}}\n",
        "expected field eventfd-count to be absent"),
    "fields, nested fields": case(
        "- eventfd: {initval: 5}\n  as: efd\n",
        "- exec_probe: {fd: $efd}  # CHECK\n"
        "  expect: {fields: {open: true, fdinfo: {fields: {eventfd-count: 6}}}}\n",
        "- exec_probe: {fd: $efd}  # CHECK\n"
        "  expect: {fields: {open: true, fdinfo: {fields: {eventfd-count: 5}}}}\n",
        "expected field fdinfo.eventfd-count 6, got 5"),
    "fields, nested at_least": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n"
                   "  expect: {fields: {eventfd-count: {at_least: 6}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {eventfd-count: {at_least: 5}}}\n",
        "expected field eventfd-count at least 6, got 5"),
    "fields, nested at_most": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n"
                   "  expect: {fields: {eventfd-count: {at_most: {sub: [5, 1]}}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {eventfd-count: {at_most: 5}}}\n",
        "expected field eventfd-count at most 4, got 5"),
    "fields, nested between": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n"
                   "  expect: {fields: {eventfd-count: {between: [98000000000, 100000000000]}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n"
        "  expect: {fields: {eventfd-count: {between: [1, 0xfffffffffffffffe]}, pos: 0}}\n",
        "expected field eventfd-count between 98000000000 and 100000000000, got 5"),
    "fields, nested between and value": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n"
                   "  expect: {fields: {eventfd-count: {value: 5, between: [0, 4]}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n"
        "  expect: {fields: {eventfd-count: {value: 5, between: [5, 6]}}}\n",
        "expected field eventfd-count between 0 and 4, got 5"),
    "fields, nested not": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {eventfd-count: {not: 5}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {eventfd-count: {not: 0}}}\n",
        "expected field eventfd-count other than 5, got 5"),
    "fields, nested ordering of text": case(
        "- eventfd: {initval: 5}\n  as: efd\n",
        "- exec_probe: {fd: $efd}  # CHECK\n  expect: {fields: {link: {at_least: 0}}}\n",
        "- exec_probe: {fd: $efd}  # CHECK\n"
        "  expect: {fields: {fdinfo: {fields: {eventfd-count: {between: [5, 5]}}}}}\n",
        "expected field link at least 0, got 'anon_inode:[eventfd]', which is not a number"),
    "fields, nested absent between": case(
        NONBLOCK5, "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {tfd: {between: [0, 9]}}}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {tfd: {present: false}}}\n",
        "expected field tfd, which is absent"),
    "matches": case(
        NONBLOCK5, "- fd_link: {fd: $efd}  # CHECK\n  expect: {matches: '^pipe:'}\n",
        "- fd_link: {fd: $efd}  # CHECK\n  expect: {matches: '^anon_inode:\\[eventfd\\]$'}\n",
        "expected value to match /^pipe:/, got 'anon_inode:[eventfd]'"),
    "blocks": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {blocks: {at_least: 0.2}}\n",
        "- eventfd: {initval: 0}\n  as: blocking\n"
        "- in_thread: {when_blocked: true, after: 0.1,"
        " steps: [{write_u64: {fd: $blocking, value: 7}}]}\n"
        "  as: writer\n"
        "- read_u64: {fd: $blocking}  # CHECK\n  expect: {value: 7, blocks: {at_least: 0.05}}\n"
        "- join: writer\n",
        "expected the call to block for at least 0.2s, but it returned after"),
    "blocks, in a thread the main thread wakes": case(
        "- eventfd: {initval: 0}\n  as: efd\n",
        "- in_thread:\n    steps:\n      - read_u64: {fd: $efd}  # CHECK\n"
        "        expect: {value: 7, blocks: {at_least: 1.5}}\n  as: reader\n"
        "- wait_blocked: reader\n- sleep: 0.06\n- write_u64: {fd: $efd, value: 7}\n"
        "- join: reader\n",
        "- in_thread:\n    steps:\n      - read_u64: {fd: $efd}  # CHECK\n"
        "        expect: {value: 7, blocks: {at_least: 0.05}}\n  as: reader\n"
        "- wait_blocked: reader\n- sleep: 0.06\n- write_u64: {fd: $efd, value: 7}\n"
        "- join: reader\n",
        "expected the call to block for at least 1.5s, but it returned after",
        where="reader"),
    "blocks, a thread that does not block is not waited for": case(
        NONBLOCK5,
        "- in_thread:\n    steps:\n      - read_u64: {fd: $efd}  # CHECK\n"
        "        expect: {blocks: {at_least: 0.05}}\n  as: reader\n"
        "- wait_blocked: reader\n- join: reader\n",
        "- in_thread:\n    steps:\n      - read_u64: {fd: $efd}  # CHECK\n"
        "        expect: {value: 5}\n  as: reader\n"
        "- wait_blocked: reader\n- join: reader\n",
        "expected the call to block for at least 0.05s, but it returned after",
        where="reader"),
    "blocks asleep, a call that returns at once": case(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {blocks: {asleep: true}}\n",
        "- eventfd: {initval: 0}\n  as: blocking\n"
        "- in_thread: {when_blocked: true, steps: [{write_u64: {fd: $blocking, value: 7}}]}\n"
        "  as: writer\n"
        "- read_u64: {fd: $blocking}  # CHECK\n  expect: {value: 7, blocks: {asleep: true}}\n"
        "- join: writer\n",
        "expected the call to block (seen asleep in the kernel while it ran",
        "was never seen asleep"),
    "blocks asleep, a waiter in a thread that does not block": case(
        NONBLOCK5,
        "- in_thread:\n    steps:\n      - read_u64: {fd: $efd}  # CHECK\n"
        "        expect: {blocks: {asleep: true}}\n  as: reader\n"
        "- wait_blocked: reader\n- join: reader\n",
        "- in_thread:\n    steps:\n      - read_u64: {fd: $efd}  # CHECK\n"
        "        expect: {value: 5}\n  as: reader\n"
        "- wait_blocked: reader\n- join: reader\n",
        "expected the call to block (seen asleep", where="reader"),
    "timerfd_elapsed, a wait that ended before the expiry": case(
        "- timerfd_create: {clockid: CLOCK_MONOTONIC, flags: 0}\n  as: tfd\n"
        "- timerfd_settime: {fd: $tfd, value: 0.3}\n",
        "- timerfd_elapsed: {fd: $tfd}  # CHECK\n  expect: {at_least: 300000000}\n",
        "- read_u64: {fd: $tfd}\n  expect: {value: 1}\n"
        "- timerfd_elapsed: {fd: $tfd}  # CHECK\n  expect: {at_least: 300000000}\n",
        "expected value at least 300000000, got "),
    "time to go plus time since the arming, a timer that is short": case(
        "- timerfd_create: {clockid: CLOCK_MONOTONIC, flags: TFD_NONBLOCK}\n  as: tfd\n"
        "- timerfd_settime: {fd: $tfd, value: 5}\n"
        "- timerfd_gettime: {fd: $tfd}\n  as: left\n"
        "- timerfd_elapsed: {fd: $tfd}\n  as: since\n",
        "- compute: {value: {add: [$left.value_ns, $since]}}  # CHECK\n"
        "  expect: {at_least: 10000000000}\n",
        "- compute: {value: {add: [$left.value_ns, $since]}}  # CHECK\n"
        "  expect: {at_least: 5000000000}\n",
        "expected value at least 10000000000, got 5"),
    "returns_within": case(
        "- eventfd: {initval: 0}\n  as: efd\n"
        "- in_thread: {after: 0.3, steps: [{write_u64: {fd: $efd, value: 7}}]}\n"
        "  as: writer\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {returns_within: 0.05}\n"
        "- join: writer\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {returns_within: 2.0}\n- join: writer\n",
        "expected the call to return within 0.05s, it took 0.",),
    "set-up step": case(
        "", "- eventfd: {flags: 0x10}  # CHECK\n",
        "- eventfd: {flags: 0}  # CHECK\n",
        "this set-up step failed with EINVAL"),
    "in_thread": case(
        "- eventfd: {initval: 0}\n  as: efd\n",
        "- in_thread:\n    after: 0.05\n    steps:\n"
        "      - write_u64: {fd: $efd, value: 7}  # CHECK\n        expect: {returns: 9}\n"
        "  as: writer\n- read_u64: {fd: $efd}\n  expect: {value: 7}\n- join: writer\n",
        "- in_thread:\n    after: 0.05\n    steps:\n"
        "      - write_u64: {fd: $efd, value: 7}  # CHECK\n        expect: {returns: 8}\n"
        "  as: writer\n- read_u64: {fd: $efd}\n  expect: {value: 7}\n- join: writer\n",
        "expected a return of 9, but the call returned 8", where="writer"),
    "in_child": case(
        NONBLOCK5,
        "- in_child:\n    steps:\n      - read_u64: {fd: $efd}  # CHECK\n"
        "        expect: {value: 4}\n- read_u64: {fd: $efd}\n  expect: {errno: EAGAIN}\n",
        "- in_child:\n    steps:\n      - read_u64: {fd: $efd}  # CHECK\n"
        "        expect: {value: 5}\n- read_u64: {fd: $efd}\n  expect: {errno: EAGAIN}\n",
        "expected value 4, got 5", where="child"),
    "differs": case(
        EMPTY,
        "- write_u64: {fd: $efd, value: 1, size: 7}  # CHECK\n  expect: {errno: EINVAL}\n"
        "  differs:\n    - kernel: '>=3.0'\n      expect: {returns: 7}\n"
        "      reason: 'a deliberately wrong rule for every modern kernel'\n",
        "- write_u64: {fd: $efd, value: 1, size: 7}  # CHECK\n  expect: {returns: 7}\n"
        "  differs:\n    - kernel: '>=3.0'\n      expect: {errno: EINVAL}\n"
        "      reason: 'short writes are refused by every modern kernel'\n",
        "expected the call to succeed, but it failed with EINVAL"),
}


def _text(bid: str, steps: str) -> str:
    return spec_text(behaviour(bid, steps))


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_a_wrong_expectation_deviates_with_expected_and_actual(name, no_leaks):
    c = CASES[name]
    text = _text("x.wrong.expectation", c.wrong)
    outcome = run_one(text)
    assert outcome.status == DEVIATES, outcome.trace()
    checked = line_of(text, "# CHECK")
    (failed,) = [r for r in outcome.records if r.status == DEVIATES]
    assert failed.line == checked, outcome.trace()
    assert failed.where == c.where
    assert outcome.message.startswith(f"line {checked}: "), outcome.message
    for fragment in c.says:
        assert fragment in outcome.message, outcome.message
    trace = outcome.trace()
    assert f"FAIL line {checked}: " in trace
    if name != "set-up step":
        assert "expected: " in trace              # the spec's expectation, as written
    if c.where != "main":
        assert f"[{c.where}]" in trace


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_the_corrected_expectation_conforms(name, no_leaks):
    outcome = run_one(_text("x.right.expectation", CASES[name].right))
    assert outcome.status == CONFORMS, outcome.trace()
    assert outcome.message == ""


def test_a_differs_variant_replaces_the_expectation_and_is_recorded():
    c = CASES["differs"]
    outcome = run_one(_text("x.differs.wrong", c.wrong))
    line = line_of(_text("x", c.wrong), "# CHECK")
    assert outcome.variants == [
        f"line {line}: kernel >=3.0: a deliberately wrong rule for every modern kernel"]
    assert "(kernel-specific expectation: kernel >=3.0: a deliberately wrong rule" in \
        outcome.trace()
    assert "expected: returns 7" in outcome.trace()


def test_a_variant_for_other_kernels_leaves_the_default_expectation():
    text = _text("x.differs.elsewhere", _steps(EMPTY, (
        "- write_u64: {fd: $efd, value: 1}  # CHECK\n  expect: {returns: 8}\n"
        "  differs:\n    - kernel: '<3.0'\n      expect: {returns: 1234}\n"
        "      reason: 'a wrong rule that only ancient kernels would follow'\n")))
    outcome = run_one(text)
    assert outcome.status == CONFORMS, outcome.trace()
    assert outcome.variants == []


def test_the_variant_follows_the_target_kernel_version():
    """The same spec on a (described) 2.6 kernel uses the variant; on this one the default."""
    text = _text("x.differs.old", _steps(EMPTY, (
        "- write_u64: {fd: $efd, value: 1}  # CHECK\n  expect: {returns: 8}\n"
        "  differs:\n    - kernel: '<3.0'\n      expect: {returns: 1234}\n"
        "      reason: 'pretend that ancient kernels returned something else'\n")))
    now = Target.current()
    old = Target(release="2.6.32-754.el6.x86_64", version_string="", arch=now.arch,
                 capabilities=now.capabilities, libc=now.libc)
    outcome = run_one(text, target=old)
    assert outcome.status == DEVIATES
    assert "expected a return of 1234, but the call returned 8" in outcome.message
    assert outcome.variants and "kernel <3.0" in outcome.variants[0]


def test_a_read_on_an_empty_blocking_eventfd_is_a_timeout_within_its_bound(no_leaks):
    text = _text("x.timeout.read", _steps("- eventfd: {initval: 0}\n  as: efd\n",
                                          "- read_u64: {fd: $efd}  # CHECK\n  within: 0.2\n"
                                          "  expect: {value: 1}\n"))
    started = time.monotonic()
    outcome = run_one(text, bound=5.0)
    elapsed = time.monotonic() - started
    assert outcome.status == TIMEOUT, outcome.trace()
    checked = line_of(text, "# CHECK")
    assert outcome.message == f"line {checked}: read_u64(fd={outcome.records[0].result['ret']}) " \
                              "did not return within 0.2s"
    assert outcome.records[-1].status == TIMEOUT
    assert "HANG line" in outcome.trace()
    assert 0.2 <= elapsed < 2.0, f"the 0.2 s bound took {elapsed:.2f}s"


def test_a_blocked_thread_is_a_timeout_and_is_joined(no_leaks):
    text = _text("x.timeout.thread", _steps("- eventfd: {initval: 0}\n  as: efd\n", (
        "- in_thread:\n    steps:\n      - read_u64: {fd: $efd}  # CHECK\n"
        "        within: 0.2\n  as: reader\n- join: reader\n")))
    outcome = run_one(text)
    assert outcome.status == TIMEOUT, outcome.trace()
    assert f"line {line_of(text, '# CHECK')}" in outcome.message


def test_an_arithmetic_field_value_can_fail():
    text = _text("x.fields.arith", _steps(
        "- eventfd: {initval: 5, flags: [EFD_NONBLOCK, EFD_SEMAPHORE]}\n  as: efd\n"
        "- read_u64: {fd: $efd}\n",
        "- fdinfo: {fd: $efd}  # CHECK\n  expect: {fields: {eventfd-count: {sub: [5, 2]}}}\n"))
    outcome = run_one(text)
    assert outcome.status == DEVIATES
    assert "expected field eventfd-count 3, got 4" in outcome.message


def test_the_trace_shows_a_range_as_a_range():
    # A list elsewhere is a bitwise OR; `between [0, 4]` must not read as `between 0|4`.
    text = _text("x.between.trace", _steps(NONBLOCK5, (
        "- fdinfo: {fd: $efd}  # CHECK\n"
        "  expect: {fields: {eventfd-count: {between: [0, {sub: [$efd, $efd]}]}}}\n")))
    outcome = run_one(text)
    assert outcome.status == DEVIATES
    assert "expected: fields {eventfd-count: {between: [0, sub($efd, $efd)]}}" in \
        outcome.trace(), outcome.trace()
    assert "expected field eventfd-count between 0 and 0, got 5" in outcome.message


def test_an_empty_range_says_so():
    outcome = run_one(_text("x.between.empty", _steps(
        NONBLOCK5, "- read_u64: {fd: $efd}  # CHECK\n  expect: {between: [6, 4]}\n")))
    assert outcome.status == DEVIATES
    assert "between 6 and 4 (an empty range" in outcome.message


def test_a_bound_that_is_not_a_number_is_the_specs_fault_not_the_kernels():
    # The loader admits only numeric forms; a $reference to a mapping slips through to the
    # run, where it must not pass for a deviation of the kernel.
    text = _text("x.bound.mapping", _steps(
        NONBLOCK5 + "- pipe2: {}\n  as: p\n",
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {at_least: $p}\n"))
    with pytest.raises(TypeError, match=r"at_least: the bound \$p is .*not a number"):
        run_one(text)


def test_an_errno_alias_matches_the_same_errno():
    outcome = run_one(_text("x.errno.alias", _steps(
        EMPTY, "- read_u64: {fd: $efd}  # CHECK\n  expect: {errno: EWOULDBLOCK}\n")))
    assert outcome.status == CONFORMS, outcome.trace()


# -- the same cases through the pytest plugin: what a user reads ---------------------------


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("expectations")
    names = {}
    entries = []
    for i, (name, c) in enumerate(CASES.items()):
        names[f"fail.case{i}"] = name
        entries.append(behaviour(f"fail.case{i}", c.wrong, title=f"wrong {name}"))
        entries.append(behaviour(f"pass.case{i}", c.right, title=f"right {name}"))
    text = spec_text(*entries)
    path = write_spec(root, text)
    ran = run_plugin(root, "-q", "--kit-step-bound", "3")
    return ran, names, text, path


def _junit_failures(ran) -> dict[str, str]:
    tree = ET.parse(ran.report_dir / "junit.xml")
    out = {}
    for case_el in tree.iter("testcase"):
        for fail in case_el:
            if fail.tag in ("failure", "error"):
                out[case_el.get("name")] = (fail.get("message") or "") + (fail.text or "")
    return out


def test_through_the_plugin_every_wrong_expectation_deviates_and_every_right_one_conforms(
        plugin_run):
    ran, names, _, _ = plugin_run
    statuses = ran.statuses()
    assert len(statuses) == 2 * len(CASES), ran.output
    wrong = {bid: s for bid, s in statuses.items() if bid.startswith("fail.")}
    right = {bid: s for bid, s in statuses.items() if bid.startswith("pass.")}
    assert set(wrong.values()) == {"deviates"}, {names[b]: s for b, s in wrong.items()}
    assert set(right.values()) == {"conforms"}, right
    assert ran.ret == 1


def test_through_the_plugin_a_deviation_shows_citation_line_trace_and_replay(plugin_run):
    ran, names, text, path = plugin_run
    failures = _junit_failures(ran)
    verdicts = ran.verdicts()
    for bid, name in names.items():
        c = CASES[name]
        start = line_of(text, f"- id: {bid}")
        checked = line_of(text, "# CHECK", after=start)
        shown = failures[bid]
        assert f"{bid} deviates: wrong {name}" in shown
        assert f'"{QUOTE}"' in shown and "eventfd(2), DESCRIPTION" in shown   # the citation
        assert f"spec: {path}:{start}" in shown                              # the behaviour
        assert f"FAIL line {checked}: " in shown                             # the step
        assert f"replay: kit replay {bid}" in shown
        for fragment in c.says:
            assert fragment in shown, (name, shown)
        v = verdicts[bid]
        assert v["cite"]["quote"] == QUOTE and v["line"] == start
        assert v["message"].startswith(f"line {checked}: ")
        assert v["replay"] == f"kit replay {bid}"
        assert any(r["status"] == "deviates" and r["line"] == checked for r in v["trace"])
    assert "conformance summary" in ran.stdout


def test_through_the_plugin_the_variant_is_in_the_verdict(plugin_run):
    ran, names, _, _ = plugin_run
    bid = next(b for b, n in names.items() if n == "differs")
    variants = ran.verdicts()[bid]["variants"]
    assert len(variants) == 1
    assert "kernel >=3.0: a deliberately wrong rule for every modern kernel" in variants[0]
    right = ran.verdicts()[bid.replace("fail.", "pass.")]["variants"]
    assert "kernel >=3.0: short writes are refused by every modern kernel" in right[0]


def _blind(monkeypatch, bid: str, steps: str):
    """Run the steps as on a sandbox without /proc/PID/task/TID/syscall: /proc never tells
    whether a thread sleeps in its call."""
    from kit.engine import interpreter

    monkeypatch.setattr(interpreter, "blocked_in_syscall", lambda *a: None)
    outcome = run_one(spec_text(behaviour(bid, _steps(steps, ""))))
    assert outcome.status == CONFORMS, outcome.trace()
    return outcome


def test_blocks_asleep_falls_back_to_time_where_proc_cannot_tell(no_leaks, monkeypatch):
    """Blind, the waker waits after the call began, and a call that blocked that long
    passes on time alone."""
    from kit.engine.expectations import ASLEEP_FALLBACK

    outcome = _blind(monkeypatch, "x.asleep.blind", (
        "- eventfd: {initval: 0}\n  as: efd\n"
        "- in_thread: {when_blocked: true, steps: [{write_u64: {fd: $efd, value: 7}}]}\n"
        "  as: writer\n"
        "- read_u64: {fd: $efd}  # CHECK\n  expect: {value: 7, blocks: {asleep: true}}\n"
        "- join: writer\n"))
    read = next(r for r in outcome.records if r.call.startswith("read_u64"))
    assert read.result["duration"] >= ASLEEP_FALLBACK
    assert "seen_asleep" not in read.result


def test_a_child_waiter_is_awaited_by_its_call_board_where_proc_cannot_tell(no_leaks,
                                                                           monkeypatch):
    """when_blocked: child, blind: the waker waits until the child's call board shows it
    inside its read, then `after`, so the read blocks."""
    _blind(monkeypatch, "x.child.blind", (
        "- eventfd: {initval: 0}\n  as: efd\n"
        "- in_thread: {when_blocked: child, after: 0.1,"
        " steps: [{write_u64: {fd: $efd, value: 7}}]}\n"
        "  as: writer\n"
        "- in_child:\n    steps:\n      - sleep: 0.3\n"
        "      - read_u64: {fd: $efd}  # CHECK\n"
        "        expect: {value: 7, blocks: {at_least: 0.05}}\n"
        "- join: writer\n"))


def test_wait_blocked_falls_back_to_time_where_proc_cannot_tell(no_leaks, monkeypatch):
    """The other way round: a thread waits, this one wakes it after wait_blocked; blind,
    wait_blocked waits the fallback, so the woken call still lasted long enough."""
    _blind(monkeypatch, "x.asleep.blind.wait", (
        "- eventfd: {initval: 0}\n  as: efd\n"
        "- in_thread:\n    steps:\n      - read_u64: {fd: $efd}  # CHECK\n"
        "        expect: {value: 7, blocks: {asleep: true}}\n  as: reader\n"
        "- wait_blocked: reader\n- write_u64: {fd: $efd, value: 7}\n"
        "- join: reader\n"))
