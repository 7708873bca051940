"""Exit codes as documented, for every command and error path: 0 conforms, 1 deviations
or timeouts (verdicts changed, for `kit report --diff`), 2 the kit failed (unreadable
input, a spec error, a crash), 3 usage (bad arguments, nothing selected, an unusable
report directory). Known deviations do not count towards 1. Run as a user runs them:
`kit` in a subprocess (the in-process main() only where a bug is simulated)."""

from __future__ import annotations

import json

import pytest
from helpers import READS_COUNTER, READS_COUNTER_WRONG, behaviour, run_kit, spec_text, write_spec

from kit import cli

GOOD = behaviour("x.codes.good", READS_COUNTER)
WRONG = behaviour("x.codes.wrong", READS_COUNTER_WRONG)
KNOWN = behaviour("x.codes.known", """
    known_deviations:
      - kernel: ">=2.0"
        reason: "wrong on purpose, and known"
        step: read_u64
        observed: {value: 2}
    steps:
      - eventfd: {initval: 2, flags: EFD_NONBLOCK}
        as: efd
      - read_u64: {fd: $efd}
        expect: {value: 3}
""")
BROKEN = behaviour("x.codes.broken", "steps:\n  - eventfd: {flags: EFD_NONBLOK}\n")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs whose verdicts differ: conforming, and with a deviation."""
    root = tmp_path_factory.mktemp("codes")
    write_spec(root, spec_text(GOOD, WRONG, KNOWN))
    specs = str(root / "specs")
    conforming = run_kit(root, "run", "--specs", specs, "--report", str(root / "a"),
                         "-n", "0", "-k", "good or known", report_dir=root / "a")
    deviating = run_kit(root, "run", "--specs", specs, "--report", str(root / "b"),
                        "-n", "0", report_dir=root / "b")
    return root, conforming, deviating


def _usage(ran, *needles):
    assert ran.ret == 3, ran.output
    assert "Traceback" not in ran.output
    for needle in needles:
        assert needle in ran.stderr, ran.stderr


# -- 0 and 1: verdicts; known deviations do not count -----------------------------------------


def test_known_deviations_do_not_count_towards_exit_1(runs):
    _, conforming, _ = runs
    assert conforming.ret == 0, conforming.output
    assert conforming.statuses() == {"x.codes.good": "conforms", "x.codes.known": "deviates"}
    assert conforming.verdicts()["x.codes.known"]["known_deviation"] == \
        "wrong on purpose, and known"
    assert "deviates (known): x.codes.known" in conforming.stdout


def test_an_unknown_deviation_beside_a_known_one_exits_1(runs):
    _, _, deviating = runs
    assert deviating.ret == 1, deviating.output
    assert deviating.statuses()["x.codes.wrong"] == "deviates"


def test_report_diff_exits_1_when_verdicts_changed_and_0_when_not(runs):
    root, _, _ = runs
    changed = run_kit(root, "report", "--diff", str(root / "a"), str(root / "b"))
    assert changed.ret == 1, changed.output
    assert "+ x.codes.wrong (only in the new report)" in changed.stdout
    same = run_kit(root, "report", "--diff", str(root / "b"), str(root / "b" / "report.json"))
    assert same.ret == 0, same.output


# -- 2: the kit failed --------------------------------------------------------------------------


@pytest.mark.parametrize("content", [None, "{ truncated", '{"format": "something else"}'],
                         ids=["missing", "truncated", "not-a-report"])
def test_unreadable_diff_input_exits_2_not_1(runs, tmp_path, content):
    root, _, _ = runs
    bad = tmp_path / "report.json"
    if content is not None:
        bad.write_text(content)
    ran = run_kit(root, "report", "--diff", str(root / "a"), str(bad))
    assert ran.ret == 2, ran.output
    assert f"kit report: cannot read {bad}" in ran.stderr
    assert "Traceback" not in ran.output


def test_rerendering_a_directory_without_a_report_exits_2(tmp_path):
    ran = run_kit(tmp_path, "report", "--report", str(tmp_path))
    assert ran.ret == 2, ran.output
    assert f"kit report: cannot read {tmp_path / 'report.json'}: No such file" in ran.stderr


def test_list_and_explain_with_a_corrupt_last_report_exit_2(runs, tmp_path):
    root, _, _ = runs
    (tmp_path / "report.json").write_text("{ torn")
    for args in (["list"], ["explain", "x.codes.good"]):
        ran = run_kit(root, *args, "--specs", str(root / "specs"), "--report", str(tmp_path))
        assert ran.ret == 2, (args, ran.output)
        assert f"cannot read {tmp_path / 'report.json'}" in ran.stderr
        assert "Traceback" not in ran.output


def test_replay_of_a_behaviour_the_kit_cannot_run_exits_2(tmp_path):
    write_spec(tmp_path, spec_text(GOOD, BROKEN))
    ran = run_kit(tmp_path, "replay", "x.codes.broken", "--specs", str(tmp_path / "specs"))
    assert ran.ret == 2, ran.output
    assert "unknown constant EFD_NONBLOK" in ran.stdout


def test_a_bug_in_the_kit_exits_2_with_its_traceback_not_1(monkeypatch, capsys):
    import kit.spec.schema

    def broken():
        raise RuntimeError("a bug")

    monkeypatch.setattr(kit.spec.schema, "build_schema", broken)
    assert cli.main(["schema"]) == 2
    err = capsys.readouterr().err
    assert "RuntimeError: a bug" in err and "kit schema: internal error" in err


# -- 3: usage --------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["run", "--profile", "nope"],
                                  ["run", "--seed", "x"], ["report", "--diff", "one"],
                                  ["explain"], ["bench", "--rounds", "many"]],
                         ids=["no-command", "unknown-command", "bad-choice", "bad-int",
                              "missing-argument", "missing-id", "bad-rounds"])
def test_argument_errors_exit_3_not_2(tmp_path, args):
    _usage(run_kit(tmp_path, *args), "usage: kit", "error:")


def test_pytest_usage_errors_passed_through_kit_run_exit_3(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    ran = run_kit(tmp_path, "run", "--specs", str(tmp_path / "specs"), "--report",
                  str(tmp_path / "out"), "-n", "0", "--", "--no-such-pytest-option")
    _usage(ran)


def test_replay_of_an_unknown_id_exits_3(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    _usage(run_kit(tmp_path, "replay", "x.codes.nope", "--specs", str(tmp_path / "specs")),
           "no behaviour with id 'x.codes.nope'")


def test_a_missing_spec_path_exits_3(tmp_path):
    for args in (["list"], ["explain", "x.codes.good"]):
        _usage(run_kit(tmp_path, *args, "--specs", str(tmp_path / "nowhere")),
               f"no spec file or directory {tmp_path / 'nowhere'}")


@pytest.mark.parametrize("args", [["bench", "--rounds", "1", "--report"],
                                  ["report", "--merge", "{a}", "-o"],
                                  ["matrix", "--only", "host", "-o"]],
                         ids=["bench", "report-merge", "matrix"])
def test_an_output_directory_that_is_a_file_exits_3_before_any_work(runs, tmp_path, args):
    root, _, _ = runs
    taken = tmp_path / "taken"
    taken.write_text("")
    argv = [a.format(a=root / "a") for a in args] + [str(taken)]
    _usage(run_kit(root, *argv), f"{taken} is not a directory")
    assert taken.read_text() == ""


def test_bench_rounds_below_one_exits_3(tmp_path):
    _usage(run_kit(tmp_path, "bench", "--rounds", "0", "--report", str(tmp_path)),
           "--rounds must be at least 1")


def test_schema_exits_0(tmp_path):
    ran = run_kit(tmp_path, "schema")
    assert ran.ret == 0 and json.loads(ran.stdout)


def test_kit_list_marks_a_known_deviation(runs):
    root, _, _ = runs
    listed = run_kit(root, "list", "--specs", str(root / "specs"), "--report", str(root / "a"))
    assert listed.ret == 0, listed.output
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("x.codes.known "))
    assert "deviates (known)" in line
    rows = json.loads(run_kit(root, "list", "--specs", str(root / "specs"), "--report",
                              str(root / "a"), "--json").stdout)
    known = next(r for r in rows if r["id"] == "x.codes.known")
    assert known["known"] is True and known["fixed"] is False
