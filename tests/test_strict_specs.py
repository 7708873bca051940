"""The strict expectations in specs/ catch what the weak ones they replaced let through.

Each case runs a real behaviour from specs/ (by id) on the real kernel, with one adapter
operation planted to answer wrongly in a way the old, weak expectation could not see: a
wait cut short of its timeout, a call that sleeps before it fails, a masked signal that
ends a wait, events looked for before the timespec is checked, a setting reset by a call
that fails, a sysctl that should be gone, a mask with a bit missing or added. The strict
spec must deviate at that step with a message that says what was expected; the weak
expectation, checked against the same planted result, would have passed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import yaml
from helpers import REPO, behaviour, line_of, load, run_one, spec_text

from kit.adapter.libc import Result
from kit.engine import expectations
from kit.engine.interpreter import CONFORMS, DEVIATES, Run, StepRecord
from kit.engine.target import Target
from kit.registry import CONSTANTS, OPERATIONS
from kit.spec.loader import load_file
from kit.spec.model import Behaviour


def spec(bid: str) -> Behaviour:
    for path in sorted((REPO / "specs" / bid.split(".")[0]).glob("*.yaml")):
        for found in load_file(path).behaviours:
            if found.id == bid:
                return found
    raise LookupError(bid)


def run(bid: str, params: dict, target: Target | None = None):
    return Run(spec(bid), target or Target.current(), params, bound=5.0).outcome()


def plant(monkeypatch, name: str, wrong) -> None:
    """Replace operation `name` by `wrong(real)`, for this test only (forked in_child
    steps inherit it)."""
    op = OPERATIONS[name]
    monkeypatch.setitem(OPERATIONS, name, dataclasses.replace(op, fn=wrong(op.fn)))


def failed_step(outcome) -> StepRecord:
    assert outcome.status == DEVIATES, outcome.trace()
    return next(r for r in outcome.records if r.status == DEVIATES)


def as_result(record: StepRecord) -> Result:
    r = record.result
    return Result(ret=r["ret"], errno=r["errno"], value=r["value"], duration=r["duration"],
                  queued=r.get("queued", 0.0))


def weak_passes(expect: dict, record: StepRecord) -> bool:
    return expectations.check(expect, as_result(record), {}) == []


# -- time -------------------------------------------------------------------------------------


def test_a_wait_cut_short_of_its_drawn_timeout_deviates(monkeypatch, no_leaks):
    """A kernel that sleeps half the timeout: still longer than the old fixed 50 ms."""
    plant(monkeypatch, "epoll_wait", lambda real: lambda **kw: real(
        **{**kw, "timeout": kw["timeout"] // 2 if kw["timeout"] > 0 else kw["timeout"]}))
    outcome = run("epoll.wait.timeout_bounds_wait", {"timeout": 120})
    step = failed_step(outcome)
    assert ("expected the call to block for at least 0.12s (div($timeout, 1000)), but it "
            "returned after 0.") in outcome.message
    assert weak_passes({"returns": 0, "blocks": {"at_least": 0.05}}, step)


def test_a_call_that_sleeps_before_it_fails_deviates(monkeypatch, no_leaks):
    """A short read on a blocking eventfd that sleeps 0.2 s before its EINVAL."""
    def sleepy(real):
        def read_u64(**kw):
            start = time.monotonic()
            time.sleep(0.2)
            result = real(**kw)
            result.duration = time.monotonic() - start
            return result
        return read_u64
    plant(monkeypatch, "read_u64", sleepy)
    outcome = run("eventfd.read.short_buffer_does_not_block", {"size": 4})
    step = failed_step(outcome)
    assert "expected the call to return within 0.05s, it took 0.2" in outcome.message
    assert weak_passes({"errno": "EINVAL", "returns_within": 0.5}, step)


def test_a_masked_signal_that_ends_the_wait_early_deviates(monkeypatch, no_leaks):
    """epoll_pwait with the signal in its mask returns 0 when the signal comes (here: a
    wait of half the quiet window asked, the signal sent while it slept)."""
    plant(monkeypatch, "epoll_pwait", lambda real: lambda **kw: real(
        **{**kw, "timeout": kw["timeout"] // 2 if kw["sigmask"] and kw["timeout"] > 0
           else kw["timeout"]}))
    outcome = run("epoll.pwait.mask_blocks_signal", {"signum": int(signal.SIGUSR1)})
    step = failed_step(outcome)
    assert step.where == "child"
    assert "expected the call to block for at least 0.1s ($quiet), but it returned after 0.0" \
        in outcome.message
    assert weak_passes({"returns": 0, "blocks": {"at_least": 0.05}}, step)


# -- invalid timespecs with an event ready ----------------------------------------------------


def _invalid(sec, nsec) -> bool:
    return sec is not None and (sec < 0 or not 0 <= nsec <= 999_999_999)


def test_events_looked_for_before_the_timespec_is_checked_deviate(monkeypatch, no_leaks):
    """A kernel that returns ready events first and checks the timespec only when there
    are none: the old steps (nothing ready) conform, the strict one does not."""
    def events_first(real):
        def epoll_pwait2(**kw):
            if _invalid(kw["tv_sec"], kw["tv_nsec"]):
                peek = real(**{**kw, "tv_sec": 0, "tv_nsec": 0})
                if peek.ok and peek.ret > 0:
                    return peek
            return real(**kw)
        return epoll_pwait2
    plant(monkeypatch, "epoll_pwait2", events_first)
    outcome = run("epoll.pwait.pwait2_invalid_timespec_einval", {"tv_sec": 0, "tv_nsec": -1})
    step = failed_step(outcome)
    waits = [r for r in outcome.records if r.call.startswith("epoll_pwait2(")]
    assert [r.status for r in waits[:2]] == [CONFORMS, CONFORMS]   # the weak checks
    assert step is waits[2]
    assert "expected failure with EINVAL, but the call returned 1" in outcome.message


def test_a_failed_settime_that_resets_the_timer_deviates(monkeypatch, no_leaks):
    """A kernel that disarms the timer before it finds tv_nsec invalid: still EINVAL,
    still disarmed (all the old steps saw), but the ready expiration is gone."""
    def resets_first(real):
        def timerfd_settime(**kw):
            if _invalid(kw.get("value_sec"), kw.get("value_nsec") or 0) or \
                    _invalid(kw.get("interval_sec"), kw.get("interval_nsec") or 0):
                real(fd=kw["fd"], value=0)
            return real(**kw)
        return timerfd_settime
    plant(monkeypatch, "timerfd_settime", resets_first)
    outcome = run("timerfd.settime.nsec.invalid", {"nsec": 1_000_000_000, "sec": 3, "flags": 0})
    step = failed_step(outcome)
    assert step.call.startswith("read_u64(")
    assert "expected the call to succeed, but it failed with EAGAIN" in outcome.message


# -- a behaviour that could not fail -----------------------------------------------------------


def test_max_user_instances_deviates_where_the_sysctl_still_exists(monkeypatch, no_leaks):
    plant(monkeypatch, "open_path", lambda real: lambda **kw: real(
        **{**kw, "path": kw["path"].replace("max_user_instances", "max_user_watches")}))
    outcome = run("epoll.create.max_user_instances", {})
    failed_step(outcome)
    assert "expected failure with ENOENT, but the call returned" in outcome.message


def test_max_user_instances_expects_the_sysctl_on_kernels_before_2_6_29(no_leaks):
    now = Target.current()
    old = Target(release="2.6.28-19-generic", version_string="", arch=now.arch,
                 capabilities=now.capabilities, libc=now.libc)
    outcome = run("epoll.create.max_user_instances", {}, target=old)
    step = failed_step(outcome)
    assert step.variant and "removed in 2.6.29" in step.variant
    assert "expected the call to succeed, but it failed with ENOENT" in outcome.message


# -- exact masks --------------------------------------------------------------------------------


def test_one_kind_of_readiness_per_event_deviates(monkeypatch, no_leaks):
    """A kernel that reports EPOLLIN alone when a socket is also writable."""
    epollin, epollout = CONSTANTS["EPOLLIN"], CONSTANTS["EPOLLOUT"]

    def one_kind(real):
        def epoll_wait(**kw):
            result = real(**kw)
            if result.ok and isinstance(result.value, dict):
                result.value = {k: v & ~epollout if v & epollin else v
                                for k, v in result.value.items()}
            return result
        return epoll_wait
    plant(monkeypatch, "epoll_wait", one_kind)
    outcome = run("epoll.edge.et_in_and_out_once", {})
    step = failed_step(outcome)
    assert "expected field 1 EPOLLIN|EPOLLOUT (0x5), got 0x1 (missing 0x4)" in outcome.message
    assert weak_passes({"returns": 1, "fields": {1: {"bits": {"set": "EPOLLIN"}}}}, step)


def test_a_stray_file_status_flag_deviates(monkeypatch, no_leaks):
    """F_GETFL with O_APPEND added: O_NONBLOCK and O_RDWR are still set."""
    def with_append(real):
        def fcntl(**kw):
            result = real(**kw)
            if kw["cmd"] == CONSTANTS["F_GETFL"] and result.ok:
                result.ret = result.value = result.ret | os.O_APPEND
            return result
        return fcntl
    plant(monkeypatch, "fcntl", with_append)
    outcome = run("eventfd.create.flags.nonblock", {"others": 0})
    step = failed_step(outcome)
    assert "expected value O_RDWR|O_NONBLOCK (0x802), got 0xc02 (extra 0x400)" \
        in outcome.message
    assert weak_passes({"bits": {"set": ["O_NONBLOCK", "O_RDWR"], "clear": "O_WRONLY"}}, step)


# -- citations ------------------------------------------------------------------------------------


def _sections(page: str) -> list[tuple[str, str | None, str]] | None:
    """The installed page as (SECTION, Subsection or None, text line), or None."""
    name, number = re.fullmatch(r"([\w.]+)\((\d)\)", page).groups()
    env = dict(os.environ, MANWIDTH="10000", MAN_KEEP_FORMATTING="")
    out = subprocess.run(["man", number, name], capture_output=True, text=True, env=env,
                         check=False, timeout=60).stdout
    if not out:
        return None
    lines, top, sub = [], None, None
    for line in out.splitlines():
        if re.fullmatch(r"[A-Z][A-Z /]+", line):
            top, sub = line.strip(), None
        elif re.match(r"   \S", line):
            sub = line.strip()
        elif line.strip():
            lines.append((top, sub, " ".join(line.split())))
    return lines


def _normal(text: str) -> str:
    return " ".join(text.replace("\u2010", "-").split())


@pytest.mark.skipif(shutil.which("man") is None, reason="man(1) is not installed")
def test_every_citation_names_the_section_the_installed_page_puts_its_quote_in():
    """`section:` starts with the quote's section and names its subsection, if any (epoll(7)'s
    questions and answers are a subsection of DESCRIPTION, not NOTES)."""
    pages: dict[str, list | None] = {}
    wrong, checked = [], 0
    for path in sorted((REPO / "specs").glob("*/*.yaml")):
        for raw in yaml.safe_load(path.read_text()).get("behaviours", []):
            cite = raw.get("cite") or {}
            page = cite.get("page", "")
            if page not in pages:
                pages[page] = _sections(page) if re.fullmatch(r"[\w.]+\(\d\)", page) else None
            lines = pages[page]
            if not lines:
                continue
            text, starts = "", []
            for top, sub, line in lines:
                starts.append((len(text), top, sub))
                text += _normal(line) + " "
            at = text.find(_normal(cite["quote"])[:60])
            if at < 0:
                continue      # a stale quote is the coverage check's to report
            checked += 1
            top, sub = next((t, s) for start, t, s in reversed(starts) if start <= at)
            section = cite.get("section", "")
            if section.split(",")[0].strip() != top or (sub and sub not in section):
                wrong.append(f"{path.relative_to(REPO)}: {raw['id']}: {section!r}, "
                             f"but {page} has it under {top}" + (f", {sub}" if sub else ""))
    assert wrong == []
    assert checked > 200, f"only {checked} quotes found in the installed pages"


# -- a bound that follows a timeout: the spec's mistakes are the spec's -------------------------


WAIT_BOUND = """
params:
  timeout: {integers: {min: 10, max: 20}}
steps:
  - epoll_create1: {}
    as: ep
  - pipe2: {}
    as: p
  - epoll_wait: {epfd: $ep, maxevents: 1, timeout: $timeout}
    expect: {returns: 0, blocks: {at_least: BOUND}}
"""


def _wait_spec(bound: str) -> str:
    return spec_text(behaviour("x.blocks.bound", WAIT_BOUND.replace("BOUND", bound)))


def test_a_bound_from_the_drawn_timeout_conforms_on_the_real_kernel(no_leaks):
    outcome = run_one(_wait_spec("{div: [$timeout, 1000]}"), {"timeout": 20})
    assert outcome.status == CONFORMS, outcome.trace()


@pytest.mark.parametrize("bound, says", [
    ('"soon"', ("at_least takes one bound: a number, a $reference, a CONSTANT or one "
                "arithmetic form such as {sub: [$x, 1]}; got 'soon'")),
    ("{pow: [$timeout, 2]}", "at_least takes one bound"),
    ("$later", "$later is not a parameter or an earlier step's `as` name"),
])
def test_a_malformed_blocks_bound_names_file_line_and_field(bound, says):
    text = _wait_spec(bound)
    (error,) = load(text).errors
    assert str(error).startswith(f"specs/x/t.yaml:{line_of(text, 'blocks:')}: behaviour "
                                 f"x.blocks.bound field steps[2].expect.blocks")
    assert says in str(error)


def test_a_blocks_bound_that_is_not_a_number_is_the_specs_fault_not_the_kernels(no_leaks):
    with pytest.raises(TypeError, match=r"blocks: the bound \$p is .*not a number"):
        run_one(_wait_spec("$p"), {"timeout": 10})
