"""Version gates on kernel changes (`since:` / `before:` a change with its commit, release
and stable backports) and documentation defects.

A gate holds per stable series: "since 6.17, and 6.12.y from 6.12.43, and 6.1.y from
6.1.149". Every verdict says, for each change its behaviour depends on, whether the kernel
carries it and which rule it was judged by. A documentation defect's steps check what the
kernel does, so a kernel that changed would fail them; reports count it apart.

Specs run on the real kernel; a change the running kernel lacks is one released in "99.0",
a change it carries one released in "2.6", so no test depends on which kernel runs it.
"""

from __future__ import annotations

import json

import pytest
from helpers import REPO, behaviour, line_of, load, load_one, run_kit, run_plugin, spec_text, \
    write_spec
from packaging.version import Version

from kit.engine import gates
from kit.engine.runner import check_behaviour
from kit.engine.target import Target, not_applicable_reason
from kit.report.diff import diff_reports, render_diff
from kit.report.html import render_html
from kit.spec.changes import carried
from kit.spec.loader import load_file
from kit.spec.model import Change

NESTING_FIX = Change("eventpoll: Fix semi-unbounded recursion", "f2e467a48287", "6.17",
                     ("6.16.1", "6.15.11", "6.12.43", "6.1.149"))


@pytest.mark.parametrize("kernel, has", [
    ("6.18.44", True), ("6.17", True), ("6.17.0", True),
    ("6.16.0", False), ("6.16.1", True), ("6.15.10", False), ("6.15.11", True),
    ("6.14.11", False),                   # a series with no backport
    ("6.12.42", False), ("6.12.43", True), ("6.12.57", True),
    ("6.6.100", False), ("6.1.148", False), ("6.1.149", True), ("6.1.192", True),
    ("5.10.262", False), ("4.19.325", False),
])
def test_a_change_is_carried_per_stable_series(kernel, has):
    assert carried(NESTING_FIX, Version(kernel)) is has


def test_a_release_candidate_release_counts_from_that_rc():
    change = Change("eventpoll: Set epoll timeout if it's in the future", "0a65bc27bd64",
                    "6.15-rc3")
    assert not carried(change, Version("6.15rc2"))
    assert carried(change, Version("6.15rc3")) and carried(change, Version("6.15.2"))
    assert not carried(change, Version("6.14.9"))


# -- the loader: bad changes are errors naming file, line and field ------------------------

GOOD = ('{subject: "a change subject", commit: 0123456789ab, release: "6.17", '
        'backports: ["6.12.43", "6.1.149"]}')
WRONG_READ = """
steps:
  - eventfd: {initval: 2, flags: EFD_NONBLOCK}
    as: efd
  - read_u64: {fd: $efd}
    expect: {value: 3}
"""


def _error(body: str):
    text = spec_text(behaviour("x.bad", body))
    result = load(text)
    assert len(result.errors) == 1, result.errors
    return text, result.errors[0]


@pytest.mark.parametrize("change, needle, field, says", [
    ('{subject: "a change subject", commit: 0123456789ab, release: "6.17.3"}', "release",
     "applies.since.release", "release '6.17.3' is not a mainline release"),
    ('{subject: "a change subject", commit: 0123456789ab, release: "6.17",\n'
     '       backports: ["6.12", "6.1.149"]}', "backports", "applies.since.backports[0]",
     "backport '6.12' is not a stable release"),
    ('{subject: "a change subject", commit: 0123456789ab, release: "6.17",\n'
     '       backports: ["6.12.43", "6.17.2"]}', "backports", "applies.since.backports[1]",
     "backport 6.17.2 is not in a series older than the release 6.17"),
    ('{subject: "a change subject", commit: 0123456789ab, release: "6.17",\n'
     '       backports: ["6.12.43", "6.12.50"]}', "backports", "applies.since.backports[1]",
     "backports 6.12.43 and 6.12.50 are in the same series"),
    ('{subject: "a change subject", commit: xyz, release: "6.17"}', "commit",
     "applies.since.commit", "does not match"),
    ('{subject: "a change subject", commit: 0123456789ab}', "since:",
     "applies.since.release", "missing required field 'release'"),
])
def test_a_bad_change_names_file_line_and_field(change, needle, field, says):
    text, error = _error(f"applies:\n  since:\n    {change}\n" + WRONG_READ)
    assert error.file == "specs/x/t.yaml" and error.behaviour == "x.bad"
    assert error.field == field, error
    assert says in error.message, error
    assert error.line == line_of(text, needle), error


def test_a_bad_change_in_a_variant_or_known_deviation_names_its_field():
    bad = '{subject: "a change subject", commit: 0123456789ab, release: "7"}'
    _, error = _error(WRONG_READ + f"    differs:\n      - before: {bad}\n"
                                   f"        expect: {{value: 2}}\n"
                                   f"        reason: a long enough reason\n")
    assert error.field == "steps[1].differs[0].before.release", error
    _, error = _error(f"known_deviations:\n  - before: {bad}\n    step: read_u64\n"
                      f"    observed: {{value: 2}}\n    reason: a long enough reason\n"
                      + WRONG_READ)
    assert error.field == "known_deviations[0].before.release", error


def test_a_variant_needs_a_gate():
    text, error = _error(WRONG_READ + "    differs:\n      - expect: {value: 2}\n"
                                      "        reason: a long enough reason\n")
    assert error.field.startswith("steps[1].differs[0]"), error
    assert error.line == line_of(text, "- expect: {value: 2}")


def test_a_documentation_defect_needs_steps_and_its_fields():
    defect = ("documentation_defect: {claim: the page claims this, kernel_does: the kernel "
              "does that, evidence: fs/timerfd.c timerfd_show}\n")
    text, error = _error(defect + "untestable: nothing can check this from user space\n")
    assert error.field == "documentation_defect" and "give steps" in error.message, error
    assert error.line == line_of(text, "documentation_defect")
    _, error = _error("documentation_defect: {claim: the page claims this}\n" + WRONG_READ)
    assert error.field == "documentation_defect.kernel_does", error
    assert "missing required field 'kernel_does'" in error.message, error


# -- judging: which rule, and saying so ----------------------------------------------------

def _change(release: str) -> str:
    return f'{{subject: "test: a change", commit: 0123456789ab, release: "{release}"}}'


LACKED, CARRIED = _change("99.0"), _change("2.6")


def _check(body: str):
    b = load_one(spec_text(behaviour("x.gate", body)))
    return b, check_behaviour(b, Target.current())


def test_a_known_deviation_before_a_change_the_kernel_lacks_says_why_and_since_when():
    _, verdict = _check(f"known_deviations:\n  - before: {LACKED}\n    step: read_u64\n"
                        f"    observed: {{value: 2}}\n    reason: recorded for this test\n"
                        + WRONG_READ)
    assert verdict.status == "deviates"
    assert verdict.known_deviation.startswith("recorded for this test (kernel ")
    assert "lacks 'test: a change' (commit 0123456789ab, in 99.0)" in verdict.known_deviation
    assert len(verdict.gates) == 1
    assert "lacks 'test: a change'" in verdict.gates[0]
    assert "excused as a known deviation on this kernel" in verdict.gates[0]


def test_a_known_deviation_before_a_change_the_kernel_carries_does_not_excuse_it():
    _, verdict = _check(f"known_deviations:\n  - before: {CARRIED}\n    step: read_u64\n"
                        f"    observed: {{value: 2}}\n    reason: recorded for this test\n"
                        + WRONG_READ)
    assert verdict.status == "deviates" and verdict.known_deviation is None
    assert "carries 'test: a change' (commit 0123456789ab, in 2.6)" in verdict.gates[0]
    assert "judged by the documented rule" in verdict.gates[0]


@pytest.mark.parametrize("gate, rule", [
    (f"before: {LACKED}", "lacks 'test: a change'"),
    (f"since: {CARRIED}", "carries 'test: a change'"),
])
def test_a_variant_on_a_change_is_the_rule_where_it_holds(gate, rule):
    body = WRONG_READ + (f"    differs:\n      - {gate}\n        expect: {{value: 2}}\n"
                         f"        reason: the older rule, for this test\n")
    _, verdict = _check(body)
    assert verdict.status == "conforms", verdict.message
    assert verdict.variants and "the older rule, for this test" in verdict.variants[0]
    assert rule in verdict.gates[0]
    assert "judged by the variant for these kernels (the older rule, for this test)" in \
        verdict.gates[0]


def test_the_documented_rule_where_a_variant_does_not_hold():
    body = WRONG_READ.replace("{value: 3}", "{value: 2}") + (
        f"    differs:\n      - before: {CARRIED}\n        expect: {{value: 3}}\n"
        f"        reason: the older rule, for this test\n")
    _, verdict = _check(body)
    assert verdict.status == "conforms" and not verdict.variants
    assert "judged by the documented expectation, not the variant" in verdict.gates[0]


def test_applies_since_a_change_the_kernel_lacks_is_not_applicable_and_says_which():
    b, verdict = _check(f"applies:\n  since: {LACKED}\n" + WRONG_READ)
    assert verdict.status == "not applicable"
    assert "lacks 'test: a change' (commit 0123456789ab, in 99.0)" in verdict.message
    assert "not applicable" in verdict.gates[0]
    assert not_applicable_reason(b, Target.current()) == verdict.message


@pytest.mark.parametrize("kernel, known", [
    ("5.10.262", True), ("6.1.148", True), ("6.1.149", False), ("6.12.42", True),
    ("6.12.43", False), ("6.17", False),
])
def test_the_nesting_fix_gate_on_the_real_spec(kernel, known):
    """Judged as each of these kernels (the real one carries the fix and conforms): where the
    fix is missing, the sixth level's known deviation is recorded, so conforming is 'fixed';
    where a backport carries it, nothing is excused."""
    spec = load_file(REPO / "specs/epoll/nesting.yaml")
    b = next(x for x in spec.behaviours if x.id == "epoll.nesting.depth_six_eloop")
    target = Target.current()
    target.kernel_override = kernel
    verdict = check_behaviour(b, target)
    assert verdict.status == "conforms"
    assert bool(verdict.fixed) is known, verdict.fixed
    assert all(("lacks" if known else "carries") + " 'eventpoll: Fix semi-unbounded recursion'"
               in g for g in verdict.gates), verdict.gates
    assert all("6.12.43, 6.1.149" in g for g in verdict.gates)


def test_a_bullseye_kernel_accepting_a_sixth_level_is_a_known_deviation_naming_the_fix():
    """What Debian bullseye's 5.10 does (epoll_ctl adds a sixth level): a known deviation
    that says why and since when, not only 'deviates'."""
    spec = load_file(REPO / "specs/epoll/nesting.yaml")
    b = next(x for x in spec.behaviours if x.id == "epoll.nesting.depth_six_eloop")
    from kit.engine import known
    from kit.engine.interpreter import DEVIATES, StepRecord

    target = Target.current()
    target.kernel_override = "5.10.262"
    step = [s for s in b.steps if s.action == "epoll_ctl"][4]
    record = StepRecord(line=step.line, call="epoll_ctl(...)", status=DEVIATES,
                        result={"ret": 0, "errno": None, "value": 0},
                        mismatches=["expected errno ELOOP, got a return of 0"])
    judged = known.judge(b, target, [record], {})
    assert judged.reason and "kernel 5.10.262 lacks 'eventpoll: Fix semi-unbounded " \
                             "recursion' (commit f2e467a48287, in 6.17" in judged.reason
    target.kernel_override = "6.1.192"
    judged = known.judge(b, target, [record], {})
    assert judged.reason is None


# -- documentation defects -----------------------------------------------------------------

DEFECT = ("documentation_defect:\n  claim: the counter reads 3\n  kernel_does: reads 2 on "
          "every kernel\n  evidence: fs/eventfd.c eventfd_read\n  since: 2.6.22\n")
KERNEL_SIDE = WRONG_READ.replace("{value: 3}", "{value: 2}")


def test_a_documentation_defect_conforms_with_the_defect_recorded():
    _, verdict = _check(DEFECT + KERNEL_SIDE)
    assert verdict.status == "conforms"
    assert verdict.documentation_defect == {
        "claim": "the counter reads 3", "kernel_does": "reads 2 on every kernel",
        "evidence": "fs/eventfd.c eventfd_read", "since": "2.6.22"}


def test_a_kernel_that_no_longer_does_what_the_defect_records_deviates():
    # a kernel that behaved otherwise: here the recorded kernel side is made wrong (3)
    _, verdict = _check(DEFECT + WRONG_READ)
    assert verdict.status == "deviates" and verdict.documentation_defect is None
    assert "expected value 3, got 2" in verdict.message
    assert "checks the kernel's side of a documentation defect, recorded as: reads 2 on " \
           "every kernel; the kernel no longer does so" in verdict.message


@pytest.mark.parametrize("bid", ["timerfd.proc.fdinfo.periodic_ticks",
                                 "timerfd.proc.fdinfo.periodic_it_value"])
def test_the_proc5_timerfd_defects_check_the_kernel_and_can_fail(bid):
    spec = load_file(REPO / "specs/timerfd/proc.yaml")
    b = next(x for x in spec.behaviours if x.id == bid)
    assert b.documentation_defect and "fs/timerfd.c" in b.documentation_defect.evidence
    assert not [d for d in b.known_deviations if d.kernel]   # no deviation that cannot fail
    verdict = check_behaviour(b, Target.current())
    assert verdict.status == "conforms", verdict.message
    # a kernel whose fdinfo did what the page says would fail the step
    fdinfo = next(s for s in b.steps if s.action == "timerfd_fdinfo")
    fields = fdinfo.expect["fields"]
    key = "ticks" if "ticks" in fields else "it_value_ns"
    fields[key] = {"at_least": 2} if key == "ticks" else {"at_least": 1}
    verdict = check_behaviour(b, Target.current())
    assert verdict.status == "deviates" and "documentation defect" in verdict.message


@pytest.fixture(scope="module")
def defect_runs(tmp_path_factory):
    """A run with a documentation defect, a gated known deviation and a gated variant; then
    one where the kernel no longer does what the defect records."""
    root = tmp_path_factory.mktemp("gates")
    gated = (f"known_deviations:\n  - before: {LACKED}\n    step: read_u64\n"
             f"    observed: {{value: 2}}\n    reason: recorded for this test\n" + WRONG_READ)
    write_spec(root, spec_text(behaviour("x.defect", DEFECT + KERNEL_SIDE),
                               behaviour("x.gated", gated)))
    first = run_plugin(root, "-q")
    write_spec(root, spec_text(behaviour("x.defect", DEFECT + WRONG_READ),
                               behaviour("x.gated", gated)))
    second = run_plugin(root, "-q")
    return root, first, second


def test_terminal_summary_shows_defects_and_why_a_known_deviation_is_known(defect_runs):
    _, first, _ = defect_runs
    assert first.ret == 0, first.output
    out = first.stdout
    assert "documentation defects (the kernel conforms to its side): 1" in out
    assert "documentation defect: x.defect: the page says the counter reads 3; the kernel " \
           "reads 2 on every kernel" in out
    assert "deviates (known): x.gated" in out
    assert "known deviation: recorded for this test (kernel " in out
    assert "kernel change: known deviation (line" in out and "lacks 'test: a change'" in out


def test_report_files_show_defects_and_gates(defect_runs):
    _, first, _ = defect_runs
    report = first.report
    assert report["summary"]["documentation_defects"] == ["x.defect"]
    verdicts = first.verdicts()
    assert verdicts["x.defect"]["documentation_defect"]["evidence"] == \
        "fs/eventfd.c eventfd_read"
    assert any("lacks 'test: a change'" in g for g in verdicts["x.gated"]["gates"])
    md = (first.report_dir / "report.md").read_text()
    assert "## Documentation defects" in md
    assert "- `x.defect` (eventfd(2)): the page says the counter reads 3; the kernel reads 2 " \
           "on every kernel (since 2.6.22). Evidence: fs/eventfd.c eventfd_read" in md
    assert "| `x.defect` | conforms (documentation defect) |" in md
    assert "## Kernel changes: which rule this kernel was judged by" in md
    assert "- kernel change: known deviation (line" in md   # under the deviation itself
    html = (first.report_dir / "report.html").read_text()
    assert '<em class="defect">(documentation defect)</em>' in html
    assert '<ul id="defects">' in html and "the page says the counter reads 3" in html
    assert '<ul id="changes">' in html and "<strong>kernel change:</strong>" in html


def test_diff_and_merge_handle_a_defect_the_kernel_no_longer_matches(defect_runs):
    root, first, second = defect_runs
    diff = diff_reports(first.report, second.report)
    text = render_diff(diff)
    assert "x.defect: conforms (documentation defect) -> deviates" in text, text
    merged = render_html([first.report, second.report])
    assert '<em class="defect">(documentation defect)</em>' in merged
    ran = run_kit(root, "report", "--merge", str(first.report_dir), str(second.report_dir),
                  "-o", str(root / "merged"))
    assert ran.ret in (0, 1), ran.output
    assert "the page says the counter reads 3" in (root / "merged/report.html").read_text()


def test_kit_list_shows_gates_and_defects(defect_runs):
    root, first, _ = defect_runs
    ran = run_kit(root, "list", "--specs", str(root / "specs"), "--report",
                  str(first.report_dir), "--json")
    rows = {r["id"]: r for r in json.loads(ran.stdout)}
    assert rows["x.defect"]["documentation_defect"] is True
    assert any("lacks 'test: a change'" in g for g in rows["x.gated"]["gates"])
    ran = run_kit(root, "list", "--specs", str(root / "specs"), "--report",
                  str(first.report_dir))
    assert "(doc defect)" in ran.stdout
    assert "kernel change: known deviation (line" in ran.stdout


def test_kit_explain_says_why_and_since_when(defect_runs):
    root, first, _ = defect_runs
    args = ["--specs", str(root / "specs"), "--report", str(first.report_dir)]
    ran = run_kit(root, "explain", "x.gated", *args)
    assert "Known deviation: recorded for this test (kernel " in ran.stdout, ran.output
    assert "Kernel change: known deviation (line" in ran.stdout
    ran = run_kit(root, "explain", "x.defect", *args)
    assert "Documentation defect: the page says the counter reads 3; the kernel reads 2 " \
           "on every kernel. Evidence: fs/eventfd.c eventfd_read" in ran.stdout, ran.output


def test_gates_explain_reads_substeps_and_skips_other_platforms():
    b = load_one(spec_text(behaviour("x.sub", f"""known_deviations:
  - platform: gvisor
    before: {LACKED}
    step: read_u64
    observed: {{value: 2}}
    reason: only on gvisor, for this test
steps:
  - in_child:
      steps:
        - eventfd: {{initval: 2, flags: EFD_NONBLOCK}}
          as: efd
        - read_u64: {{fd: $efd}}
          expect: {{value: 2}}
          differs:
            - before: {LACKED}
              expect: {{value: 2}}
              reason: inside a child, for this test
""")))
    lines = gates.explain(b, Target.current())
    assert len(lines) == 1 and "inside a child" in lines[0]     # the gvisor entry is skipped


# -- the operations the new behaviours need ------------------------------------------------


def test_timens_is_refused_outside_a_forked_child():
    from kit.adapter.timens import timens_for_children

    res = timens_for_children(monotonic=1000)
    assert res.errno == "EPERM" and "only runs in a forked child" in res.value


def test_timens_refuses_a_huge_offset_in_a_child():
    body = """steps:
  - in_child:
      steps:
        - timens_for_children: {monotonic: 100000000}
          expect: {returns: 0}
"""
    _, verdict = _check(body)
    assert verdict.status == "deviates"
    assert "EINVAL" in verdict.message


@pytest.mark.parametrize("split, says", [
    ("[100]", "split must be 1 to 16 iovec sizes of 0 to 64 bytes"),
    ("[]", "split must be 1 to 16 iovec sizes"),
])
def test_a_bad_split_is_a_kit_error_naming_it(split, says):
    _, verdict = _check(f"""steps:
  - eventfd: {{initval: 1, flags: EFD_NONBLOCK}}
    as: efd
  - readv_u64: {{fd: $efd, split: {split}}}
    expect: {{returns: 8}}
""")
    assert verdict.status == "error" and says in verdict.message, verdict.message


def test_writev_split_must_add_up_to_eight():
    _, verdict = _check("""steps:
  - eventfd: {initval: 1, flags: EFD_NONBLOCK}
    as: efd
  - writev_u64: {fd: $efd, value: 1, split: [4, 3]}
    expect: {returns: 8}
""")
    assert verdict.status == "error" and "must add up to the 8 bytes" in verdict.message


def test_vectored_reads_of_a_descriptor_not_the_behaviours_are_refused():
    # fd 1 is open here but not the behaviour's: refused when the step runs, an error
    _, verdict = _check("""steps:
  - readv_u64: {fd: 1, split: [4, 4]}
    expect: {returns: 8}
""")
    assert verdict.status == "error" and "refused" in verdict.message, verdict.message


@pytest.mark.parametrize("release, excused", [
    ("6.15.0-rc2", False), ("6.15.0-rc3", True), ("6.15.0-rc4-dirty", True),
    ("6.15.0-rc5", False), ("6.15.0", False), ("6.14.11", False), ("6.18.44", False),
])
def test_a_regression_window_is_since_one_change_and_before_its_fix(release, excused):
    """An -rc kernel (uname -r 6.15.0-rc3) is judged as 6.15-rc3, before 6.15."""
    spec = load_file(REPO / "specs/epoll/pwait.yaml")
    b = next(x for x in spec.behaviours if x.id == "epoll.pwait.pwait2_nanosecond_timeout")
    target = Target.current()
    target.release, target.version_string, target.kernel_override = release, "#1 SMP", ""
    target.version_signature = ""
    dev, = [d for d in b.known_deviations if d.since]
    assert target.gate_holds(dev) is excused


def test_an_rc_override_is_accepted():
    target = Target.current()
    target.kernel_override = "6.15-rc3"
    assert str(target.kernel) == "6.15rc3"
