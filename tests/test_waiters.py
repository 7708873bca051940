"""Waiter groups and stress loops (issue 11): each expectation kind of a `woken` step fails
with a message naming who woke and who is still blocked, a loop's failure names its
iteration, every waiter is released and nothing leaks, and mistakes in these steps are
loader errors naming file, line and field. All on the real kernel."""

from __future__ import annotations

import pytest
from helpers import behaviour, line_of, load, run_one, spec_text

from kit.engine import repeat
from kit.engine.interpreter import CONFORMS, DEVIATES, ERROR, Run
from kit.engine.target import Target

# N threads, each on its own epoll instance attached to one eventfd (EPOLLEXCLUSIVE or
# not), one write: Linux wakes one exclusive instance, every plain one.
GROUP = """
steps:
  - eventfd: {{flags: EFD_NONBLOCK}}
    as: efd
  - waiters:
      count: {count}
      kind: {kind}
      steps:
        - epoll_create1: {{}}
          as: ep
        - epoll_ctl: {{epfd: $ep, op: EPOLL_CTL_ADD, fd: $efd, events: {events}, data: 1}}
        - epoll_wait: {{epfd: $ep, maxevents: 4, timeout: -1}}
          within: 6
          as: got
    as: w
  - write_u64: {{fd: $efd, value: 1}}
  - woken: w  # CHECK
    within: {within}
    expect: {expect}
    as: who
"""


def group(expect: str, *, exclusive: bool = True, count: int = 3, kind: str = "thread",
          within: float = 0.3) -> str:
    events = "[EPOLLIN, EPOLLEXCLUSIVE]" if exclusive else "EPOLLIN"
    return spec_text(behaviour("x.waiters.case", GROUP.format(
        count=count, kind=kind, events=events, within=within, expect=expect)))


# Poll on an idle pipe with a timeout per waiter: waiter i returns after 150*(i+1) ms, in
# index order, without any trigger (a deterministic "who" for which / order).
STAGGERED = """
steps:
  - pipe2: {flags: O_NONBLOCK}
    as: p
  - waiters:
      count: 3
      steps:
        - poll: {fd: $p.read, events: POLLIN, timeout: {mul: [150, {add: [$waiter, 1]}]}}
          within: 6
    as: w
  - woken: w  # CHECK
    within: 0.35
    expect: EXPECT
"""


def staggered(expect: str) -> str:
    return spec_text(behaviour("x.waiters.staggered", STAGGERED.replace("EXPECT", expect)))


def deviates(text: str, *says: str):
    outcome = run_one(text)
    assert outcome.status == DEVIATES, outcome.trace()
    line = line_of(text, "# CHECK")
    assert outcome.message.startswith(f"line {line}: woken(w): "), outcome.message
    for fragment in says:
        assert fragment in outcome.message, outcome.message
    assert f"FAIL line {line}: woken(w, within" in outcome.trace()
    return outcome


def conforms(text: str):
    outcome = run_one(text)
    assert outcome.status == CONFORMS, outcome.trace()
    return outcome


# -- each kind fails with who woke and who did not, and passes when right -----------------

def test_exactly_one_exclusive_waiter_wakes(no_leaks):
    outcome = conforms(group("{exactly: 1}"))
    trace = outcome.trace()
    assert trace.count("still blocked at the end: released by the kit") == 2, trace


def test_exactly_fails_naming_who_woke_and_who_is_still_blocked(no_leaks):
    deviates(group("{exactly: 2}"), "expected exactly 2 woken, but 1 of 3 woke within 0.3 s: "
                                    "waiter ", "still blocked: waiters ")


def test_at_least_fails_when_fewer_woke(no_leaks):
    deviates(group("{at_least: 2}"), "expected at least 2 woken, but 1 of 3 woke")


def test_all_fails_naming_the_waiters_still_blocked(no_leaks):
    deviates(group("{all: true}"), "expected all 3 woken, but waiters ", "still blocked after "
                                   "0.3 s (1 of 3 woke)")


def test_all_passes_for_plain_instances_and_ends_the_window_early(no_leaks):
    outcome = conforms(group("{all: true}", exclusive=False, within=5))
    assert "released by the kit" not in outcome.trace()


def test_at_most_and_none_fail_when_every_plain_instance_wakes(no_leaks):
    deviates(group("{at_most: 1}", exclusive=False), "expected at most 1 woken, but 3 of 3 woke")
    deviates(group("{none: true}", exclusive=False), "expected no waiter woken, but 3 of 3 woke")


def test_which_and_order(no_leaks):
    conforms(staggered("{which: [0, 1]}"))
    conforms(staggered("{order: [0, 1]}"))
    deviates(staggered("{which: [2]}"), "expected waiter 2 woken, but 2 of 3 woke within "
                                        "0.35 s: waiters 0, 1; still blocked: waiter 2")
    deviates(staggered("{order: [1, 0]}"), "expected waiters to finish in the order [1, 0], "
                                           "but 2 of 3 woke", "(in that order)")


def test_process_waiters(no_leaks):
    conforms(group("{exactly: 1}", kind="process", count=2))
    deviates(group("{exactly: 2}", kind="process", count=2), "but 1 of 2 woke")


def test_a_woken_waiters_own_expectation_is_judged_and_named(no_leaks):
    text = group("{exactly: 1}").replace("          as: got\n",
                                         "          expect: {returns: 2}  # WAITER\n")
    outcome = run_one(text)
    assert outcome.status == DEVIATES, outcome.trace()
    assert outcome.message.startswith("waiter w[") and \
        f"line {line_of(text, 'epoll_wait: {epfd: $ep')}: epoll_wait" in outcome.message, \
        outcome.message
    assert "expected a return of 2" in outcome.message


def test_the_woken_step_binds_who_woke_and_what_each_bound(no_leaks):
    text = group("{exactly: 1}") + (
        "      - compute: {value: $who.count}\n        expect: {value: 1}\n"
        "      - compute: {value: $who.blocked}\n        expect: {value: [9]}  # RESULT\n")
    outcome = run_one(text)
    assert outcome.status == DEVIATES, outcome.trace()
    assert outcome.message.startswith(f"line {line_of(text, '$who.blocked')}: "), outcome.message
    (woken,) = [r for r in outcome.records if r.call.startswith("woken(")]
    assert woken.result["ret"] == 1 and len(woken.result["value"]) == 1


def test_a_count_out_of_range_is_an_error_not_a_deviation(no_leaks):
    outcome = run_one(group("{exactly: 1}", count=0))
    assert outcome.status == ERROR
    assert "count must be an integer from 1 to 64, got 0" in outcome.message


# -- stress loops ---------------------------------------------------------------------------

LOOP = """
steps:
  - repeat:
      iterations: 400
      seconds: 30
      steps:
        - eventfd: {flags: EFD_NONBLOCK}
          as: efd
        - compute: {value: $iteration}  # CHECK
          expect: {not: 7}
    as: loop
  - compute: {value: $loop.iterations}
    expect: {value: 8}  # DONE
"""


def _run(text: str, profile: str):
    result = load(text)
    assert not result.errors, [str(e) for e in result.errors]
    return Run(result.behaviours[0], Target.current(), {}, 2.0, profile=profile).outcome()


def test_a_loop_failure_names_its_iteration_and_keeps_only_that_trace(no_leaks):
    text = spec_text(behaviour("x.loop.fails", LOOP))
    outcome = _run(text, "thorough")
    assert outcome.status == DEVIATES, outcome.trace()
    assert outcome.message.startswith(f"iteration 7 of 400: line {line_of(text, '# CHECK')}: "
                                      f"compute"), outcome.message
    assert outcome.trace().count("eventfd(") == 1     # the failing iteration's steps only


def test_a_loop_runs_its_share_of_iterations_per_profile(no_leaks):
    text = spec_text(behaviour("x.loop.counts", LOOP.replace("{not: 7}", "{not: 0}")))
    outcome = _run(text, "quick")                     # 400 * 0.02 = 8 iterations
    assert outcome.status == CONFORMS, outcome.trace()
    assert "repeat(8 of 8 iterations in" in outcome.trace()
    assert repeat.planned(load(text).behaviours[0].steps[0], "thorough") == (400, 30)
    assert repeat.planned(load(text).behaviours[0].steps[0], "default") == (40, 3.0)


def test_a_lost_wake_up_in_a_loop_is_a_deviation_naming_iteration_and_waiter(no_leaks):
    body = """
steps:
  - repeat:
      iterations: 50
      seconds: 30
      steps:
        - eventfd: {flags: EFD_NONBLOCK}
          as: efd
        - waiters:
            count: 2
            steps:
              - epoll_create1: {}
                as: ep
              - epoll_ctl: {epfd: $ep, op: EPOLL_CTL_ADD, fd: $efd, events: [EPOLLIN, EPOLLEXCLUSIVE]}
              - epoll_wait: {epfd: $ep, maxevents: 1, timeout: -1}
                within: 6
          as: w
        - write_u64: {fd: $efd, value: 1}
        - woken: w  # CHECK
          within: 0.2
          expect: {all: true}
"""
    text = spec_text(behaviour("x.loop.lost", body))
    outcome = _run(text, "thorough")
    assert outcome.status == DEVIATES, outcome.trace()
    assert outcome.message.startswith(f"iteration 1 of 50: line {line_of(text, '# CHECK')}: "
                                      f"woken(w): expected all 2 woken, but waiter "), \
        outcome.message
    assert "still blocked after 0.2 s" in outcome.message


# -- loader errors ----------------------------------------------------------------------------

def _error(text: str):
    result = load(text)
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return result.errors[0]


@pytest.mark.parametrize("body, needle, field, says", [
    (GROUP.format(count=2, kind="thread", events="EPOLLIN", within=1, expect="{exactly: 1}")
     .replace("  - woken: w  # CHECK", "  - woken: v  # CHECK"),
     "# CHECK", "steps[3].woken", "woken names 'v', which no earlier waiters step started"),
    (GROUP.format(count=2, kind="thread", events="EPOLLIN", within=1, expect="{value: 1}"),
     "expect: {value", "steps[3].expect.value", "a woken step expects exactly"),
    (GROUP.format(count=2, kind="thread", events="EPOLLIN", within=1, expect="{exactly: 1}")
     .replace("    as: w\n", ""),
     "- waiters:", "steps[1]", "waiters needs `as: NAME`"),
    ("steps:\n  - eventfd: {}\n    as: efd\n    expect: {exactly: 1}\n",
     "expect: {exactly", "steps[0].expect.exactly", "exactly is for a woken step"),
    (("params:\n  waiter: {just: 1}\nsteps:\n  - waiters:\n      count: 1\n      steps:\n"
     "        - eventfd: {}\n    as: w\n"),
     "- waiters:", "steps[0].waiters", ("waiters binds $waiter inside its steps, but 'waiter' "
                                      "is already bound")),
    (("steps:\n  - repeat:\n      iterations: 3\n      seconds: 1\n      steps:\n"
     "        - in_thread:\n            steps:\n              - eventfd: {}\n"
     "          as: t\n"),
     "- repeat:", "steps[0].repeat", ("in_thread 't' is started inside the repeat but never "
                                     "joined there")),
    (("steps:\n  - repeat:\n      iterations: 0\n      seconds: 1\n      steps:\n"
     "        - eventfd: {}\n"),
     "iterations: 0", "steps[0].repeat.iterations", "0 is less than the minimum of 1"),
    ("params:\n  quiet: {integers: {min: 1, max: 2}}\nsteps:\n  - eventfd: {}\n",
     "quiet: {", "params.quiet", "$quiet is the profile's quiet window"),
    ("steps:\n  - waiters:\n      count: $nope\n      steps:\n        - eventfd: {}\n    as: w\n",
     "count: $nope", "steps[0].waiters.count", "$nope is not a parameter"),
])
def test_mistakes_are_loader_errors_naming_file_line_and_field(body, needle, field, says):
    text = spec_text(behaviour("x.loader.case", body))
    err = _error(text)
    assert err.line == line_of(text, needle), (str(err), needle)
    assert err.field == field, str(err)
    assert says in err.message, str(err)
    assert err.behaviour == "x.loader.case"


# -- a known deviation can name a woken step ----------------------------------------------------

def test_a_known_deviation_names_a_woken_step_and_what_it_gave():
    from kit.engine.runner import check_behaviour

    body = GROUP.format(count=3, kind="thread", events="[EPOLLIN, EPOLLEXCLUSIVE]", within=0.3,
                        expect="{exactly: 3}")
    for observed, known in (("{returns: 1}", True), ("{returns: 2}", False)):
        text = spec_text(behaviour("x.waiters.known", body + (
            'known_deviations:\n  - kernel: ">=2.0"\n    step: who\n'
            f"    observed: {observed}\n    reason: recorded on purpose for this test\n")))
        verdict = check_behaviour(load(text).behaviours[0], Target.current())
        assert verdict.status == DEVIATES, verdict.message
        if known:
            assert verdict.known_deviation == "recorded on purpose for this test"
        else:
            assert not verdict.known_deviation
            assert "this run failed at step who, which gave returns 1" in verdict.message, \
                verdict.message


def test_a_waiter_neither_finished_nor_blocked_is_a_timeout_not_a_lost_wake_up(no_leaks):
    from kit.engine.interpreter import TIMEOUT

    body = STAGGERED.replace("          within: 6\n", "          within: 6\n        - sleep: 3\n")
    text = spec_text(behaviour("x.waiters.starved", body.replace("EXPECT", "{exactly: 0}")))
    outcome = run_one(text)          # the step bound is 2 s: shorter than the waiters' sleep
    assert outcome.status == TIMEOUT, outcome.trace()
    assert outcome.message.startswith(f"line {line_of(text, '# CHECK')}: woken(w): w[0]"), \
        outcome.message
    assert "neither finished nor slept in it within 2s after the window" in outcome.message


# -- the profile's quiet window ------------------------------------------------------------

def test_a_woken_step_without_within_watches_the_profiles_quiet_window(no_leaks):
    from kit.engine.profiles import QUIET

    text = "".join(line for line in group("{exactly: 1}").splitlines(keepends=True)
                   if "within: 0.3" not in line)
    for profile in ("quick", "default"):
        outcome = _run(text, profile)
        assert outcome.status == CONFORMS, outcome.trace()
        assert f"woken(w, within {QUIET[profile]:g} s)" in outcome.trace(), profile


def test_quiet_ms_is_bound_in_every_example_and_follows_the_profile(no_leaks):
    text = spec_text(behaviour("x.quiet.ms", """
steps:
  - eventfd: {flags: EFD_NONBLOCK}
    as: efd
  - epoll_create1: {}
    as: ep
  - epoll_ctl: {epfd: $ep, op: EPOLL_CTL_ADD, fd: $efd, events: EPOLLIN, data: 1}
  - epoll_wait: {epfd: $ep, maxevents: 1, timeout: $quiet_ms}
    expect: {returns: 0, blocks: {at_least: $quiet}}
"""))
    for profile, ms in (("quick", 100), ("default", 300)):
        outcome = _run(text, profile)
        assert outcome.status == CONFORMS, outcome.trace()
        assert f"timeout=$quiet_ms={ms}" in outcome.trace() or f"timeout={ms}" in \
            outcome.trace(), outcome.trace()
