"""The pytest plugin and the reports: items named by behaviour id, selection, spec errors as
items of their own, skips with reasons, known deviations as xfail, report.json / report.md /
junit.xml, xdist, and no descriptor or thread left behind."""

from __future__ import annotations

import os
import threading
import xml.etree.ElementTree as ET

import pytest
from helpers import (
    QUOTE,
    READS_COUNTER,
    behaviour,
    line_of,
    run_one,
    run_plugin,
    spec_text,
    write_spec,
)

import kit
from kit.adapter.proc import open_fds
from kit.engine.interpreter import CONFORMS, DEVIATES, TIMEOUT
from kit.engine.target import Target

MIXED = spec_text(
    behaviour("x.good.counter", """
        params:
          initval: {integers: {min: 1, max: 0xffffffff}}
        steps:
          - eventfd: {initval: $initval, flags: EFD_NONBLOCK}
            as: efd
          - read_u64: {fd: $efd}
            expect: {returns: 8, value: $initval}
    """, title="A read returns the counter"),
    behaviour("x.bad.value", """
        params:
          initval: {integers: {min: 1, max: 1000}}
        steps:
          - eventfd: {initval: $initval, flags: EFD_NONBLOCK}
            as: efd
          - read_u64: {fd: $efd}
            expect: {value: {add: [$initval, 1]}}
    """, title="A deliberately wrong value"),
    behaviour("x.timeout.read", """
        steps:
          - eventfd: {initval: 0}
            as: efd
          - read_u64: {fd: $efd}
            within: 0.2
            expect: {value: 1}
    """, title="A read on an empty blocking eventfd"),
    behaviour("x.after.timeout", """
        steps:
          - eventfd: {initval: 2, flags: EFD_NONBLOCK}
            as: efd
          - read_u64: {fd: $efd}
            expect: {value: 2}
    """, title="Runs after the timeout"),
    behaviour("x.na.ancient", """
        applies: {kernel: "<2.0"}
        steps:
          - eventfd: {}
    """, title="Only on ancient kernels"),
    behaviour("x.na.arch", """
        applies: {arch: [pdp11]}
        steps:
          - eventfd: {}
    """, title="Only on a PDP-11"),
    behaviour("x.untestable.oops", 'untestable: "only a kernel oops would show it"',
              title="Cannot be seen from user space"),
    behaviour("x.known.deviation", """
        known_deviations:
          - kernel: ">=2.0"
            step: read_u64
            observed: {value: 2}
            reason: "the spec is wrong here on purpose, and we know it"
        steps:
          - eventfd: {initval: 2, flags: EFD_NONBLOCK}
            as: efd
          - read_u64: {fd: $efd}
            expect: {value: 3}
    """, title="A known deviation"),
    behaviour("x.unknown.deviation", """
        known_deviations:
          - kernel: "<2.0"
            step: read_u64
            observed: {value: 2}
            reason: "only known on ancient kernels, so not here"
        steps:
          - eventfd: {initval: 2, flags: EFD_NONBLOCK}
            as: efd
          - read_u64: {fd: $efd}
            expect: {value: 3}
    """, title="A deviation known only elsewhere"),
    behaviour("x.broken.spec", """
        steps:
          - eventfd: {flags: EFD_NONBLOK}
    """, title="A malformed behaviour"),
    behaviour("x.differs.applied", """
        steps:
          - eventfd: {initval: 0, flags: EFD_NONBLOCK}
            as: efd
          - write_u64: {fd: $efd, value: 1, size: 4}
            expect: {returns: 4}
            differs:
              - kernel: ">=3.0"
                expect: {errno: EINVAL}
                reason: "modern kernels refuse writes shorter than 8 bytes"
    """, title="A kernel-specific expectation"),
    behaviour("x.closes.nothing", """
        steps:
          - eventfd: {initval: 1, flags: EFD_NONBLOCK}
            as: efd
          - dup: {fd: $efd}
          - pipe2: {flags: O_NONBLOCK}
          - socketpair: {}
          - epoll_create1: {}
            as: ep
          - epoll_ctl: {epfd: $ep, op: EPOLL_CTL_ADD, fd: $efd}
          - in_thread: {steps: [{eventfd: {}}]}
            as: t
          - join: t
          - in_child: {steps: [{eventfd: {}}]}
    """, title="Opens many descriptors and closes none"),
)
OTHER = spec_text(behaviour("y.other.one", """
    steps:
      - eventfd: {initval: 1, flags: EFD_NONBLOCK}
        as: efd
      - fd_link: {fd: $efd}
        expect: {matches: '^anon_inode:\\[eventfd\\]$'}
""", title="Another family"))

EXPECTED = {
    "x.good.counter": "conforms", "x.bad.value": "deviates", "x.timeout.read": "timeout",
    "x.after.timeout": "conforms", "x.na.ancient": "not applicable",
    "x.na.arch": "not applicable", "x.untestable.oops": "untestable",
    "x.known.deviation": "deviates", "x.unknown.deviation": "deviates",
    "x.broken.spec": "error", "x.differs.applied": "conforms",
    "x.closes.nothing": "conforms", "y.other.one": "conforms",
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    path = write_spec(root, MIXED, "mixed.yaml")
    write_spec(root, OTHER, "other.yaml", family="y")
    ran = run_plugin(root, "-v", "--kit-seed", "7")
    return ran, path


# -- items ---------------------------------------------------------------------------------


def test_items_are_named_by_behaviour_id(pytester):
    write_spec(pytester.path, MIXED, "mixed.yaml")
    result = pytester.runpytest_subprocess("-p", "kit.plugin", "--collect-only", "-q", "specs",
                                           timeout=120)
    # A spec error's item carries its line: a duplicate id must not share a node id.
    result.stdout.fnmatch_lines([f"specs/x/mixed.yaml::{bid}" + ("?line-*" if bid == "x.broken.spec"
                                                                 else "") for bid in EXPECTED
                                 if bid.startswith("x.") and bid != "x.broken.spec"])
    result.stdout.fnmatch_lines(["specs/x/mixed.yaml::x.broken.spec?line-*"])


def test_k_selects_behaviours_by_id(pytester):
    write_spec(pytester.path, MIXED, "mixed.yaml")
    result = pytester.runpytest_subprocess("-p", "kit.plugin", "-v", "-k",
                                           "good or after", "specs", timeout=120)
    result.assert_outcomes(passed=2, deselected=len(EXPECTED) - 1 - 2)
    result.stdout.fnmatch_lines(["*good*counter*PASSED*", "*after*timeout*PASSED*"])
    assert "bad" not in result.stdout.str()


def test_verbose_output_shows_the_behaviour_id(pytester):
    write_spec(pytester.path, spec_text(behaviour("x.first.good", "steps:\n  - eventfd: {}\n")))
    result = pytester.runpytest_subprocess("-p", "kit.plugin", "-v", "specs", timeout=120)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["specs/x/t.yaml::x.first.good PASSED*"])


def test_a_malformed_behaviour_is_an_error_item_and_its_neighbours_pass(pytester):
    text = spec_text(
        behaviour("x.first.good", "steps:\n  - eventfd: {initval: 1}\n"),
        behaviour("x.the.broken", "steps:\n  - eventfd: {flags: EFD_NONBLOK}\n"),
        behaviour("x.last.good", "steps:\n  - eventfd: {initval: 2}\n"))
    write_spec(pytester.path, text)
    result = pytester.runpytest_subprocess("-p", "kit.plugin", "-v", "specs", timeout=120)
    result.assert_outcomes(passed=2, failed=1)
    line = line_of(text, "EFD_NONBLOK")
    result.stdout.fnmatch_lines([
        "*first*good PASSED*", "*last*good PASSED*",
        (f"spec error: *specs/x/t.yaml:{line}: behaviour x.the.broken field "
         "steps[[]0[]].eventfd.flags: unknown constant EFD_NONBLOK (did you mean EFD_NONBLOCK?)"),
    ])
    assert result.ret == 1


def test_a_file_that_is_not_yaml_is_one_error_item(pytester):
    write_spec(pytester.path, "behaviours:\n  - id: x.a.b\n\ttitle: tab\n", "broken.yaml")
    write_spec(pytester.path, spec_text(behaviour("x.fine.one", "steps:\n  - eventfd: {}\n")))
    result = pytester.runpytest_subprocess("-p", "kit.plugin", "-v", "specs", timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*spec-error?line-3?*", "*not valid YAML*"])


# -- outcomes and the verdicts behind them -------------------------------------------------


def test_every_behaviour_gets_the_expected_verdict(mixed):
    ran, _ = mixed
    assert ran.statuses() == EXPECTED, ran.output
    assert ran.ret == 1


def test_outcomes_map_to_pytest(mixed):
    ran, _ = mixed
    out = ran.stdout
    assert "5 passed" in out and "4 failed" in out and "3 skipped" in out \
        and "1 xfailed" in out, out.splitlines()[-1]


def test_not_applicable_is_a_skip_with_its_reason(mixed):
    ran, _ = mixed
    release = Target.current().kernel
    assert f"not applicable: kernel {release} is outside <2.0" in ran.stdout
    assert "not applicable: architecture" in ran.stdout and "pdp11" in ran.stdout
    v = ran.verdicts()
    assert v["x.na.ancient"]["message"] == f"kernel {release} is outside <2.0"
    assert "pdp11" in v["x.na.arch"]["message"]


def test_untestable_is_a_skip_with_its_reason(mixed):
    ran, _ = mixed
    assert "untestable: only a kernel oops would show it" in ran.stdout
    assert ran.verdicts()["x.untestable.oops"]["message"] == "only a kernel oops would show it"


def test_a_known_deviation_is_xfail_and_reported_as_a_known_deviation(mixed):
    ran, _ = mixed
    assert "known deviation: the spec is wrong here on purpose, and we know it" in ran.stdout
    known = ran.verdicts()["x.known.deviation"]
    assert known["status"] == "deviates"
    assert known["known_deviation"] == "the spec is wrong here on purpose, and we know it"
    assert "expected value 3, got 2" in known["message"]
    other = ran.verdicts()["x.unknown.deviation"]
    assert other["status"] == "deviates" and other["known_deviation"] is None
    assert "deviates (known): x.known.deviation" in ran.stdout


def test_a_differs_variant_is_recorded_in_the_verdict(mixed):
    ran, _ = mixed
    (variant,) = ran.verdicts()["x.differs.applied"]["variants"]
    line = line_of(MIXED, "size: 4")
    assert variant == (f"line {line}: kernel >=3.0: modern kernels refuse writes shorter "
                       "than 8 bytes")
    assert ran.verdicts()["x.good.counter"]["variants"] == []


def test_a_timeout_is_its_own_verdict_and_the_run_goes_on(mixed):
    ran, _ = mixed
    v = ran.verdicts()
    hang = v["x.timeout.read"]
    assert hang["status"] == "timeout"
    assert "did not return within 0.2s" in hang["message"]
    assert hang["duration"] < 3.0, "the 0.2 s bound was not honoured"
    assert any(r["status"] == "timeout" for r in hang["trace"])
    assert v["x.after.timeout"]["status"] == "conforms"
    assert "x.timeout.read timed out" in ran.stdout


def test_a_deviation_prints_citation_counterexample_trace_and_replay(mixed):
    ran, path = mixed
    out = ran.stdout
    start = line_of(MIXED, "- id: x.bad.value")
    assert "x.bad.value deviates: A deliberately wrong value" in out
    assert f'"{QUOTE}"' in out
    assert f"spec: {path}:{start}" in out
    assert 'counterexample: {"initval": 1}' in out       # shrunk to the smallest
    assert "expected value 2, got 1" in out
    assert "replay: kit replay x.bad.value --params '{\"initval\": 1}'" in out


# -- report.json, report.md, junit.xml -----------------------------------------------------


def test_report_json_describes_the_target_and_the_run(mixed):
    ran, _ = mixed
    report = ran.report
    t, uts = report["target"], os.uname()
    assert report["kit_version"] == kit.__version__
    assert t["release"] == uts.release and t["version_string"] == uts.version
    assert t["arch"] == Target.current().arch and t["arch"]
    assert t["libc"] == Target.current().libc and t["libc"]
    assert t["kernel"] == str(Target.current().kernel)
    assert t["kernel_config"] == Target.current().describe()["kernel_config"]  # where from
    assert report["run"]["seed"] == 7 and report["run"]["profile"] == "quick"
    assert report["summary"]["behaviours"] == len(EXPECTED)
    assert report["summary"]["statuses"] == {"conforms": 5, "deviates": 3, "timeout": 1,
                                             "error": 1, "not applicable": 2,
                                             "untestable": 1}
    assert set(report["summary"]["families"]) == {"x", "y"}
    assert report["summary"]["conformance"] == pytest.approx(5 / 9)
    assert [b["id"] for b in report["behaviours"]] == sorted(EXPECTED)


def test_report_json_has_a_full_record_per_behaviour(mixed):
    ran, path = mixed
    v = ran.verdicts()
    for bid, verdict in v.items():
        assert verdict["status"] == EXPECTED[bid]
        assert isinstance(verdict["duration"], (int, float)) and verdict["duration"] >= 0
        if bid != "x.broken.spec":
            assert verdict["cite"] == {"page": "eventfd(2)", "section": "DESCRIPTION",
                                       "quote": QUOTE, "source": None,
                                       "basis": "documented"}
            assert verdict["seed"] == 7
            assert verdict["line"] == line_of(MIXED if bid.startswith("x.") else OTHER,
                                              f"- id: {bid}")
            assert verdict["source"].lstrip().startswith(f"- id: {bid}")
    bad = v["x.bad.value"]
    assert bad["counterexample"] == {"initval": 1}
    assert bad["replay"] == "kit replay x.bad.value --params '{\"initval\": 1}'"
    assert bad["file"] == str(path) and bad["family"] == "x"
    assert v["x.good.counter"]["counterexample"] is None
    broken = v["x.broken.spec"]
    assert "unknown constant EFD_NONBLOK" in broken["message"]
    assert broken["line"] == line_of(MIXED, "EFD_NONBLOK")


def test_report_md_is_written_for_people(mixed):
    ran, _ = mixed
    md = (ran.report_dir / "report.md").read_text()
    assert md.startswith("# Syscall conformance report")
    assert f"`{os.uname().release}`" in md
    for bid in EXPECTED:
        assert f"`{bid}`" in md
    assert "## Deviations, timeouts and errors" in md
    assert "### `x.known.deviation`: deviates — known: the spec is wrong here on purpose" in md
    assert "expected value 2, got 1" in md
    assert "modern kernels refuse writes shorter than 8 bytes" in md
    assert "| `x.untestable.oops` | untestable | only a kernel oops would show it |" in md


def test_junit_xml_has_one_testcase_per_behaviour(mixed):
    ran, _ = mixed
    tree = ET.parse(ran.report_dir / "junit.xml")
    cases = {c.get("name").split("[line-")[0]: c for c in tree.iter("testcase")}
    assert set(cases) == set(EXPECTED)
    kinds = {name: [child.tag for child in c if child.tag != "properties"]
             for name, c in cases.items()}
    assert kinds["x.good.counter"] == []
    assert kinds["x.bad.value"] == ["failure"]
    assert kinds["x.timeout.read"] == ["failure"]
    assert kinds["x.broken.spec"] == ["failure"]
    assert kinds["x.na.ancient"] == ["skipped"]
    assert kinds["x.known.deviation"] == ["skipped"]          # pytest's xfail in junit
    failure = cases["x.bad.value"].find("failure")
    assert QUOTE in (failure.text or "") + (failure.get("message") or "")


# -- xdist -----------------------------------------------------------------------------------

XDIST_SET = spec_text(*[behaviour(f"x.par.ok{i}", READS_COUNTER) for i in range(4)], behaviour("x.par.bad", """
    params:
      initval: {integers: {min: 1, max: 0xffffffff}}
    assume: [{gt: [$initval, 16]}]
    steps:
      - eventfd: {initval: $initval, flags: EFD_NONBLOCK}
        as: efd
      - read_u64: {fd: $efd}
        expect: {value: 17}
"""), behaviour("x.par.skip", 'applies: {kernel: "<2.0"}\nsteps:\n  - eventfd: {}\n'),
    behaviour("x.par.timeout", "steps:\n  - eventfd: {}\n    as: efd\n"
                               "  - read_u64: {fd: $efd}\n    within: 0.2\n"))


def test_xdist_and_serial_runs_give_identical_verdicts(tmp_path):
    write_spec(tmp_path, XDIST_SET)
    serial = run_plugin(tmp_path, "-n", "0", "-q")
    parallel = run_plugin(tmp_path, "-n", "2", "-q")
    assert serial.statuses() == parallel.statuses(), parallel.output
    assert serial.statuses()["x.par.bad"] == "deviates"
    assert serial.statuses()["x.par.timeout"] == "timeout"
    assert serial.statuses()["x.par.skip"] == "not applicable"
    assert "gw0" in parallel.stdout or "gw1" in parallel.stdout or \
        "2 workers" in parallel.stdout
    counter = {bid: v["counterexample"] for bid, v in serial.verdicts().items()}
    assert counter == {bid: v["counterexample"] for bid, v in parallel.verdicts().items()}
    assert counter["x.par.bad"]["initval"] > 16
    assert (parallel.report_dir / "junit.xml").exists()


# -- nothing left behind ---------------------------------------------------------------------


def test_a_spec_that_closes_nothing_passes_under_the_plugin(mixed):
    ran, _ = mixed
    assert ran.verdicts()["x.closes.nothing"]["status"] == "conforms"
    assert "leaked" not in ran.stdout


CLOSES_NOTHING = MIXED[MIXED.index("  - id: x.closes.nothing"):]


def _snapshot():
    return open_fds(), {t for t in threading.enumerate() if t.is_alive()}


@pytest.mark.parametrize("tail, status", [
    ("", CONFORMS),
    ("      - read_u64: {fd: $efd}\n        expect: {value: 99}\n", DEVIATES),
    (("      - eventfd: {}\n        as: blocking\n"
      "      - read_u64: {fd: $blocking}\n        within: 0.1\n"), TIMEOUT),
], ids=["conforms", "deviates", "timeout"])
def test_a_run_closes_every_descriptor_its_steps_opened(tail, status):
    text = "behaviours:\n" + CLOSES_NOTHING + tail
    fds_before, threads_before = _snapshot()
    outcome = run_one(text)
    assert outcome.status == status, outcome.trace()
    fds_after, threads_after = _snapshot()
    assert fds_after == fds_before
    assert threads_after == threads_before
    created = [r.result["ret"] for r in outcome.records
               if r.call.startswith(("eventfd", "dup", "epoll_create1"))
               and r.where == "main"]
    assert len(created) >= 3 and not set(created) & (fds_after - fds_before)


def test_the_plugin_flags_a_descriptor_the_kit_failed_to_close(pytester):
    """An operation that forgets to report a descriptor it made (a kit bug, simulated
    here) is caught by the per-item check as a kit error, not left to leak silently."""
    pytester.makeconftest("""
        import dataclasses
        import kit.adapter
        from kit.registry import OPERATIONS

        real = OPERATIONS["fcntl"]

        def forgetful(**kw):
            res = real.fn(**kw)
            res.created_fds.clear()
            return res

        OPERATIONS["fcntl"] = dataclasses.replace(real, fn=forgetful)
    """)
    write_spec(pytester.path, spec_text(behaviour("x.leak.dupfd", """
        steps:
          - eventfd: {initval: 0, flags: EFD_NONBLOCK}
            as: efd
          - fcntl: {fd: $efd, cmd: 0, arg: 200}
            expect: {returns: 200}
    """), behaviour("x.after.leak", "steps:\n  - eventfd: {}\n")))
    result = pytester.runpytest_subprocess("-p", "kit.plugin", "-v", "specs", timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*kit error in x.leak.dupfd*",
                                 "*the kit leaked descriptors [[]200[]]*"])


@pytest.mark.parametrize("cmd", [0, 1030], ids=["F_DUPFD", "F_DUPFD_CLOEXEC"])
def test_a_run_closes_descriptors_made_by_fcntl_dupfd(cmd):
    text = spec_text(behaviour("x.dupfd.closed", f"""
        steps:
          - eventfd: {{initval: 0, flags: EFD_NONBLOCK}}
            as: efd
          - fcntl: {{fd: $efd, cmd: {cmd}, arg: 300}}
            expect: {{returns: 300}}
    """))
    before = open_fds()
    try:
        outcome = run_one(text)
        assert outcome.status == CONFORMS, outcome.trace()
        assert 300 not in open_fds() - before
    finally:
        if 300 not in before:
            try:
                os.close(300)
            except OSError:
                pass


def test_a_thread_whose_join_times_out_does_not_outlive_the_run():
    text = spec_text(behaviour("x.join.timeout", """
        steps:
          - eventfd: {initval: 0, flags: EFD_NONBLOCK}
            as: efd
          - in_thread:
              steps:
                - sleep: 0.6
                - write_u64: {fd: $efd, value: 1}
            as: slow
          - join: slow
            within: 0.1
    """))
    threads_before = {t for t in threading.enumerate() if t.is_alive()}
    outcome = run_one(text)
    assert outcome.status == TIMEOUT
    left = [t for t in threading.enumerate() if t.is_alive() and t not in threads_before]
    try:
        assert left == [], f"still running after the run: {[t.name for t in left]}"
    finally:
        for t in left:
            t.join(5)


def test_a_duplicate_id_keeps_both_verdicts_in_the_report(tmp_path):
    write_spec(tmp_path, spec_text(
        behaviour("x.dup.one", "steps:\n  - eventfd: {}\n"),
        behaviour("x.dup.one", "steps:\n  - eventfd: {}\n", title="The same id again")))
    ran = run_plugin(tmp_path, "-q")
    statuses = sorted(b["status"] for b in ran.report["behaviours"])
    assert statuses == ["conforms", "error"], ran.output


def test_a_known_deviation_that_hangs_is_a_known_timeout(tmp_path):
    """A target that blocks where the docs say the call returns deviates too: the
    recorded reason applies, the verdict stays `timeout`, pytest shows an xfail."""
    write_spec(tmp_path, spec_text(behaviour("x.known.hang", """
        known_deviations:
          - kernel: ">=2.0"
            step: read_u64
            observed: {timeout: true}
            reason: recorded here on purpose, to check a timeout can be known
        steps:
          - eventfd: {initval: 0}
            as: efd
          - read_u64: {fd: $efd}
            within: 0.2
            expect: {value: 1}
    """)))
    ran = run_plugin(tmp_path)
    verdict = ran.verdicts()["x.known.hang"]
    assert verdict["status"] == "timeout"
    assert verdict["known_deviation"].startswith("recorded here on purpose")
    assert "1 xfailed" in ran.stdout
