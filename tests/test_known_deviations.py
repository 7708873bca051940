"""Known deviations are keyed by the failure: the step (or model operation) where the target
differs and what it gives there. The same failure is a known deviation (xfail); another
errno or value at that step, or a failure at another step, is a new deviation whose message
names the recorded one; a known deviation that conforms again is reported as fixed.

Every case is a small spec with a deliberately wrong expectation, run on the real kernel;
the known deviation recorded for the running kernel (`kernel: ">=2.0"`) stands for what a
deviating target would do.
"""

from __future__ import annotations

import json

import pytest
from helpers import behaviour, line_of, load, load_one, run_kit, run_plugin, spec_text, write_spec

from kit.engine.known import describe
from kit.engine.runner import check_behaviour
from kit.engine.target import Target
from kit.model import MODEL_OPERATIONS
from kit.report.diff import diff_reports, render_diff

# The read returns the initial value 2; the spec claims 3.
WRONG_READ = """
steps:
  - eventfd: {initval: 2, flags: EFD_NONBLOCK}
    as: efd
  - read_u64: {fd: $efd}
    expect: {value: 3}
  - read_u64: {fd: $efd}
    expect: {errno: EAGAIN}
"""
RIGHT_READ = WRONG_READ.replace("{value: 3}", "{value: 2}")


def known(step: str, observed: str, *, where: str = 'kernel: ">=2.0"',
          reason: str = "recorded on purpose for this test") -> str:
    return (f"known_deviations:\n  - {where}\n    step: {step}\n    observed: {observed}\n"
            f"    reason: {reason}\n")


def check(body: str, **kw):
    b = load_one(spec_text(behaviour("x.known", body)))
    return check_behaviour(b, Target.current(), **kw)


# -- matching, in process ---------------------------------------------------------------


def test_the_same_failure_is_the_known_deviation():
    verdict = check(known("read_u64#1", "{value: 2}") + WRONG_READ)
    assert verdict.status == "deviates"
    assert verdict.known_deviation == "recorded on purpose for this test"
    assert verdict.new_deviation is None
    assert "expected value 3, got 2" in verdict.message


@pytest.mark.parametrize("observed", ["{errno: EAGAIN}", "{value: 7}", "{returns: 4}"])
def test_another_result_at_the_same_step_is_a_new_deviation(observed):
    verdict = check(known("read_u64#1", observed) + WRONG_READ)
    assert verdict.status == "deviates" and verdict.known_deviation is None
    # the message says what happened and which recorded deviation it is not
    assert "a new deviation: this run failed at step read_u64#1, which gave returns 8, " \
           "value 2" in verdict.message
    assert f"not as the known one recorded for this target: step read_u64#1 giving " \
           f"{observed.strip('{}').replace(':', '')}, on kernel >=2.0" in verdict.message
    assert verdict.new_deviation in verdict.message


def test_the_same_result_at_another_step_is_a_new_deviation():
    # the second read's result (EAGAIN) recorded as if the first one failed with it
    verdict = check(known("read_u64#2", "{value: 2}") + WRONG_READ)
    assert verdict.known_deviation is None
    assert "failed at step read_u64#1" in verdict.new_deviation
    assert "step read_u64#2 giving value 2" in verdict.new_deviation


def test_a_step_is_found_by_its_as_name_and_observed_may_use_parameters():
    body = known("counter", "{value: $initval}") + """
params:
  initval: {integers: {min: 1, max: 50}}
steps:
  - eventfd: {initval: $initval, flags: EFD_NONBLOCK}
    as: efd
  - read_u64: {fd: $efd}
    as: counter
    expect: {value: {add: [$initval, 1]}}
"""
    verdict = check(body)
    assert verdict.status == "deviates"
    assert verdict.known_deviation == "recorded on purpose for this test", verdict.message


def test_a_known_deviation_for_another_target_does_not_apply():
    verdict = check(known("read_u64#1", "{value: 2}", where="platform: no-such-platform")
                    + WRONG_READ)
    assert verdict.status == "deviates"
    assert verdict.known_deviation is None and verdict.new_deviation is None


def test_a_known_deviation_names_the_abi_it_happens_on():
    from kit.adapter import arch

    here = check(known("read_u64#1", "{value: 2}", where=f"arch: [{arch.ARCH}]") + WRONG_READ)
    assert here.known_deviation == "recorded on purpose for this test"
    other = "i386" if arch.ARCH != "i386" else "x86_64"
    elsewhere = check(known("read_u64#1", "{value: 2}", where=f"arch: [{other}]")
                      + WRONG_READ)
    assert elsewhere.known_deviation is None and elsewhere.new_deviation is None


def test_a_step_that_hangs_matches_timeout_true_and_nothing_else():
    hangs = """
steps:
  - eventfd: {initval: 0}
    as: efd
  - read_u64: {fd: $efd}
    within: 0.2
    expect: {value: 1}
"""
    verdict = check(known("read_u64", "{timeout: true}") + hangs)
    assert verdict.status == "timeout" and verdict.known_deviation
    verdict = check(known("read_u64", "{errno: EAGAIN}") + hangs)
    assert verdict.status == "timeout" and verdict.known_deviation is None
    assert "which gave no return within its bound" in verdict.new_deviation


def test_a_failure_in_a_thread_is_found_by_its_step_name():
    body = known("write_u64", "{errno: EINVAL}") + """
steps:
  - eventfd: {initval: 0, flags: EFD_NONBLOCK}
    as: efd
  - in_thread:
      steps:
        - write_u64: {fd: $efd, value: 0xffffffffffffffff}
          expect: {returns: 8}
    as: writer
  - join: writer
"""
    verdict = check(body)
    assert verdict.status == "deviates" and verdict.known_deviation, verdict.message


def test_a_known_deviation_that_conforms_is_fixed():
    verdict = check(known("read_u64#1", "{value: 2}") + RIGHT_READ)
    assert verdict.status == "conforms"
    assert verdict.fixed == ("known deviation no longer seen: step read_u64#1 giving value 2, "
                             "on kernel >=2.0")
    # a replay checks one example only: it does not say the deviation is gone
    assert check(known("read_u64#1", "{value: 2}") + RIGHT_READ, params={}).fixed is None


# -- model behaviours: keyed by the operation and the disagreement ------------------------

MODEL = """
model: eventfd_epoll
known_deviations:
  - kernel: ">=2.0"
    operation: {operation}
    disagreement: {pattern}
    reason: recorded on purpose for this test
"""
# Two writes that fill the counter: the second would overflow, so it fails with EAGAIN.
FILLS = [{"op": "eventfd", "id": "e1", "initval": 0, "semaphore": False},
         {"op": "write", "file": "e1", "value": 0xFFFFFFFFFFFFFFFE},
         {"op": "write", "file": "e1", "value": 1}]


@pytest.mark.parametrize("operation, pattern, matched", [
    ("write", "'failed with EAGAIN'", True),
    ("write", "'failed with EINVAL'", False),
    ("read", "EAGAIN", False),
])
def test_a_model_disagreement_is_matched_by_operation_and_pattern(operation, pattern, matched,
                                                                  monkeypatch):
    from kit.model import eventfd as eventfd_model

    # A model that believes the counter holds 2**64 - 1 stands for a target that disagrees
    # with the page: the kernel (real) refuses the second write, the model accepts it.
    monkeypatch.setattr(eventfd_model, "COUNTER_MAX", 0xFFFFFFFFFFFFFFFF)
    verdict = check(MODEL.format(operation=operation, pattern=pattern),
                    params={"program": FILLS})
    assert verdict.status == "deviates"
    assert bool(verdict.known_deviation) is matched, verdict.message
    if not matched:
        assert "disagreed at operation write" in verdict.new_deviation
        assert f"operation {operation} with a disagreement matching" in verdict.new_deviation


def test_model_operations_are_the_programs_operations():
    from kit.model.program import Program
    from kit.model.shape import SHAPES

    assert all(hasattr(Program, "_" + op) for op in MODEL_OPERATIONS)
    # the names a known deviation may give are the ones a replayed program may use
    assert set(SHAPES) == set(MODEL_OPERATIONS)


# -- the loader: where and what, or an error naming file, line and field ----------------


def _error(body: str):
    text = spec_text(behaviour("x.bad", body))
    result = load(text)
    assert len(result.errors) == 1, result.errors
    return text, result.errors[0]


@pytest.mark.parametrize("entry, needle, field, says", [
    ("step: read_u64\n    observed: {value: 2}", "step: read_u64",
     "known_deviations[0].step",
     "read_u64 is called 2 times: name one as read_u64#1 to read_u64#2, or by its `as` name"),
    ("step: write_u64\n    observed: {value: 2}", "step: write_u64",
     "known_deviations[0].step", "no step is named 'write_u64'"),
    ("step: read_u64#3\n    observed: {value: 2}", "step: read_u64",
     "known_deviations[0].step", "no step is named 'read_u64#3'"),
    ("step: efd\n    observed: {errno: ENOTANERRNO}", "observed:",
     "known_deviations[0].observed.errno", "unknown errno ENOTANERRNO"),
    ("step: efd\n    observed: {timeout: true, errno: EINVAL}", "observed:",
     "known_deviations[0].observed", "timeout: true stands alone"),
    ("step: read_u64#1\n    observed: {value: $efd}", "observed:",
     "known_deviations[0].observed.value", "$efd is not a parameter"),
    ("step: efd", "- kernel:", "known_deviations[0].observed", "missing required field"),
    ("operation: write\n    disagreement: x", "operation:", "known_deviations[0].operation",
     "operation is for model behaviours"),
])
def test_a_bad_known_deviation_names_file_line_and_field(entry, needle, field, says):
    text, error = _error(f'known_deviations:\n  - kernel: ">=2.0"\n    {entry}\n'
                         f"    reason: a long enough reason\n" + WRONG_READ)
    assert error.file == "specs/x/t.yaml" and error.behaviour == "x.bad"
    assert error.field == field, error
    assert says in error.message, error
    assert error.line == line_of(text, needle), error


@pytest.mark.parametrize("entry, field, says", [
    ("operation: wirte\n    disagreement: x", "known_deviations[0].operation",
     "unknown model operation 'wirte' (did you mean 'write'?)"),
    ("operation: write\n    disagreement: '(unclosed'", "known_deviations[0].disagreement",
     "invalid regular expression"),
    ("step: efd\n    observed: {ok: true}", "known_deviations[0].step",
     "step is for step behaviours"),
])
def test_a_bad_model_known_deviation_names_the_field(entry, field, says):
    text, error = _error(f'model: eventfd_epoll\nknown_deviations:\n  - kernel: ">=2.0"\n'
                         f"    {entry}\n    reason: a long enough reason\n")
    assert error.field == field and says in error.message, error
    assert error.line == line_of(text, field.rsplit(".", 1)[1] + ":"), error


def test_every_known_deviation_in_specs_names_its_failure():
    from helpers import REPO

    from kit.spec.loader import load_tree

    entries = [(b.id, dev) for r in load_tree(REPO / "specs") for b in r.behaviours
               for dev in b.known_deviations]
    assert entries
    for bid, dev in entries:
        assert (dev.step and dev.observed) or (dev.operation and dev.disagreement), bid
        assert describe(dev)


# -- what a user sees: pytest outcomes, summary, reports, diff ----------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same three behaviours twice: first deviating as recorded, then conforming (the
    known one fixed), deviating differently (a new deviation), and as recorded still."""
    root = tmp_path_factory.mktemp("known")
    specs = [("x.known.same", WRONG_READ, RIGHT_READ),
             ("x.known.other", WRONG_READ, WRONG_READ.replace("initval: 2", "initval: 5")),
             ("x.known.still", WRONG_READ, WRONG_READ)]
    entry = known("read_u64#1", "{value: 2}")
    write_spec(root, spec_text(*[behaviour(bid, entry + before) for bid, before, _ in specs]))
    first = run_plugin(root, "-q")
    write_spec(root, spec_text(*[behaviour(bid, entry + after) for bid, _, after in specs]))
    second = run_plugin(root, "-q")
    return root, first, second


def test_known_deviations_are_xfail_and_a_fixed_one_is_marked(runs):
    _, first, second = runs
    assert first.ret == 0 and "3 xfailed" in first.stdout, first.output
    v = second.verdicts()
    assert v["x.known.same"]["status"] == "conforms"
    assert v["x.known.same"]["fixed"].startswith("known deviation no longer seen: step read_u64#1")
    assert v["x.known.still"]["known_deviation"] and v["x.known.still"]["fixed"] is None
    assert second.report["summary"]["fixed"] == ["x.known.same"]
    assert "fixed: x.known.same: known deviation no longer seen" in second.stdout
    # fixed does not fail the run; the new deviation does
    assert second.ret == 1 and "1 failed" in second.stdout and "1 xfailed" in second.stdout


def test_a_new_failure_of_a_known_behaviour_fails_and_names_the_recorded_one(runs):
    _, _, second = runs
    other = second.verdicts()["x.known.other"]
    assert other["status"] == "deviates" and other["known_deviation"] is None
    assert "which gave returns 8, value 5, not as the known one recorded for this target: " \
           "step read_u64#1 giving value 2" in other["message"]
    assert "deviates: x.known.other: line" in second.stdout
    # the failure text pytest shows says it too
    assert "a new deviation: this run failed at step read_u64#1" in second.stdout


def test_reports_show_fixed(runs):
    _, _, second = runs
    md = (second.report_dir / "report.md").read_text()
    assert "## Fixed: known deviations no longer seen" in md
    assert "- `x.known.same` conforms now: known deviation no longer seen" in md
    assert "| `x.known.same` | conforms (fixed) |" in md
    html = (second.report_dir / "report.html").read_text()
    assert '<em class="fixed">(fixed)</em>' in html
    assert "<strong>fixed</strong>, conforms now: known deviation no longer seen" in html


def test_diff_shows_fixed_and_a_lost_known_deviation(runs):
    root, first, second = runs
    old, new = first.report, second.report
    diff = diff_reports(old, new)
    changes = {c["id"]: (c["before"], c["after"]) for c in diff["changed"]}
    assert changes == {"x.known.same": ("deviates (known)", "conforms (fixed)"),
                       "x.known.other": ("deviates (known)", "deviates")}
    assert "x.known.same: deviates (known) -> conforms (fixed)" in render_diff(diff)
    ran = run_kit(root, "report", "--diff", str(first.report_dir / "report.json"),
                  str(second.report_dir / "report.json"), "--json")
    assert ran.ret == 1, ran.output
    assert json.loads(ran.stdout)["changed"] == diff["changed"]


def test_kit_run_exit_code_counts_new_deviations_not_known_or_fixed(tmp_path):
    entry = known("read_u64#1", "{value: 2}")

    def kit_run(*bodies: str):
        write_spec(tmp_path, spec_text(*[behaviour(f"x.exit.b{i}", entry + body)
                                         for i, body in enumerate(bodies)]))
        report = tmp_path / f"report-{len(list(tmp_path.glob('report-*')))}"
        return run_kit(tmp_path, "run", "--specs", str(tmp_path / "specs"), "--report",
                       str(report), "-n", "0", report_dir=report)

    known_and_fixed = kit_run(WRONG_READ, RIGHT_READ)
    assert known_and_fixed.ret == 0, known_and_fixed.output
    assert sorted(known_and_fixed.statuses().values()) == ["conforms", "deviates"]
    new = kit_run(WRONG_READ.replace("initval: 2", "initval: 4"))
    assert new.ret == 1, new.output
    assert "a new deviation" in new.verdicts()["x.exit.b0"]["message"]


def test_a_failure_inside_a_child_process_matches_by_index_field():
    # the child's records come back through JSON: index keys arrive as strings
    body = known("read_siginfo", "{fields: {0: {fields: {signo: SIGUSR2}}}}") + """
steps:
  - in_child:
      steps:
        - signal_install: {signum: SIGUSR1}
        - signal_block: {signals: "SIGUSR1"}
        - signalfd: {mask: "SIGUSR1", flags: SFD_NONBLOCK}
          as: sfd
        - signal_process: {signum: SIGUSR1}
        - read_siginfo: {fd: $sfd}
          expect: {fields: {0: {fields: {signo: SIGUSR2}}}}
"""
    verdict = check(body.replace("observed: {fields: {0: {fields: {signo: SIGUSR2}}}}",
                                 "observed: {fields: {0: {fields: {signo: SIGUSR1}}}}"))
    assert verdict.status == "deviates" and verdict.known_deviation, verdict.message
    verdict = check(body)
    assert verdict.known_deviation is None and "a new deviation" in verdict.message


def test_the_merged_page_marks_a_target_where_a_known_deviation_is_fixed(runs):
    from kit.report.html import render_html

    _, first, second = runs
    old = dict(first.report, target=dict(first.report["target"], name="before"))
    new = dict(second.report, target=dict(second.report["target"], name="after"))
    html = render_html([old, new])
    differences = html[html.index('<table id="differences">'):]
    start = differences.index("<code>x.known.same</code>")
    row = differences[start:differences.index("</tr>", start)]
    assert "known</em>" in row and '<em class="fixed">fixed</em>' in row
    assert "<code>x.known.same</code> on after: <strong>fixed</strong>" in html
