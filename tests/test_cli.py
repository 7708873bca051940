"""The `kit` command: exit codes of `kit run`, and list / explain / replay / schema."""

from __future__ import annotations

import json

import pytest
from helpers import (
    QUOTE,
    READS_COUNTER,
    READS_COUNTER_WRONG,
    Ran,
    behaviour,
    line_of,
    run_kit,
    spec_text,
    write_spec,
)

from kit.spec.schema import build_schema

GOOD = behaviour("x.cli.good", READS_COUNTER, title="A read returns the counter")
WRONG = behaviour("x.cli.wrong", READS_COUNTER_WRONG, title="A deliberately wrong value")
HANG = behaviour("x.cli.hang", """
    steps:
      - eventfd: {initval: 0}
        as: efd
      - read_u64: {fd: $efd}
        within: 0.2
""", title="A read that never returns")
BROKEN = behaviour("x.cli.broken", "steps:\n  - eventfd: {flags: EFD_NONBLOK}\n")
SKIPPED = behaviour("x.cli.ancient", 'applies: {kernel: "<2.0"}\nsteps:\n  - eventfd: {}\n')


def _run(tmp_path, *behaviours, args=()) -> Ran:
    write_spec(tmp_path, spec_text(*behaviours))
    report = tmp_path / "out"
    return run_kit(tmp_path, "run", "--specs", str(tmp_path / "specs"), "--report",
                   str(report), "-n", "0", *args, report_dir=report)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """One `kit run` over a conforming, a deviating and a not-applicable behaviour."""
    root = tmp_path_factory.mktemp("cli")
    return root, _run(root, GOOD, WRONG, SKIPPED)


def test_run_exits_0_when_everything_conforms(tmp_path):
    ran = _run(tmp_path, GOOD, SKIPPED)
    assert ran.ret == 0, ran.output
    assert ran.statuses() == {"x.cli.good": "conforms", "x.cli.ancient": "not applicable"}
    for name in ("report.json", "report.md", "junit.xml"):
        assert (tmp_path / "out" / name).exists(), name


def test_run_exits_1_on_a_deviation(mixed_run):
    _, ran = mixed_run
    assert ran.ret == 1, ran.output
    assert ran.statuses() == {"x.cli.good": "conforms", "x.cli.wrong": "deviates",
                              "x.cli.ancient": "not applicable"}
    assert "kit replay x.cli.wrong" in ran.stdout


def test_run_exits_1_on_a_timeout(tmp_path):
    ran = _run(tmp_path, GOOD, HANG)
    assert ran.ret == 1, ran.output
    assert ran.statuses()["x.cli.hang"] == "timeout"


def test_run_exits_2_on_a_spec_error_even_beside_deviations(tmp_path):
    ran = _run(tmp_path, GOOD, WRONG, BROKEN)
    assert ran.ret == 2, ran.output
    assert ran.statuses() == {"x.cli.good": "conforms", "x.cli.wrong": "deviates",
                              "x.cli.broken": "error"}
    assert "unknown constant EFD_NONBLOK" in ran.stdout


def test_run_exits_3_when_nothing_is_selected(tmp_path):
    ran = _run(tmp_path, GOOD, args=("-k", "nomatch"))
    assert ran.ret == 3, ran.output
    assert not (tmp_path / "out" / "report.json").exists()


def test_run_selects_with_k(tmp_path):
    ran = _run(tmp_path, GOOD, WRONG, HANG, args=("-k", "good"))
    assert ran.ret == 0, ran.output
    assert ran.statuses() == {"x.cli.good": "conforms"}


def test_run_accepts_a_spec_directory_with_any_name(tmp_path):
    spec_dir = tmp_path / "conformance" / "x"
    spec_dir.mkdir(parents=True)
    (spec_dir / "t.yaml").write_text(spec_text(GOOD))
    ran = run_kit(tmp_path, "run", "--specs", str(tmp_path / "conformance"), "--report",
                  str(tmp_path / "out"), "-n", "0", report_dir=tmp_path / "out")
    assert ran.ret == 0, ran.output


def test_list_json_lists_every_behaviour_with_its_last_status(mixed_run):
    tmp_path, _ = mixed_run
    listed = run_kit(tmp_path, "list", "--specs", str(tmp_path / "specs"), "--report",
                     str(tmp_path / "out"), "--json")
    assert listed.ret == 0, listed.output
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert set(rows) == {"x.cli.good", "x.cli.wrong", "x.cli.ancient"}
    assert rows["x.cli.good"]["last_status"] == "conforms"
    assert rows["x.cli.wrong"]["last_status"] == "deviates"
    assert rows["x.cli.ancient"]["last_status"] == "not applicable"
    assert rows["x.cli.wrong"]["title"] == "A deliberately wrong value"
    assert rows["x.cli.wrong"]["family"] == "x"
    assert rows["x.cli.wrong"]["line"] == line_of(spec_text(GOOD, WRONG, SKIPPED),
                                                  "- id: x.cli.wrong")


def test_list_exits_2_and_names_a_spec_error(tmp_path):
    write_spec(tmp_path, spec_text(GOOD, BROKEN))
    listed = run_kit(tmp_path, "list", "--specs", str(tmp_path / "specs"), "--report",
                     str(tmp_path / "none"), "--json")
    assert listed.ret == 2
    assert [r["id"] for r in json.loads(listed.stdout)] == ["x.cli.good"]
    assert "spec error:" in listed.stderr and "EFD_NONBLOK" in listed.stderr


def test_explain_shows_citation_spec_and_last_verdict(mixed_run):
    tmp_path, _ = mixed_run
    shown = run_kit(tmp_path, "explain", "x.cli.wrong", "--specs", str(tmp_path / "specs"),
                    "--report", str(tmp_path / "out"))
    assert shown.ret == 0, shown.output
    out = shown.stdout
    assert "x.cli.wrong: A deliberately wrong value" in out
    assert f'"{QUOTE}"' in out and "eventfd(2), DESCRIPTION" in out
    assert "expect: {value: {add: [$initval, 1]}}" in out          # the spec as written
    assert "Last run: deviates" in out and "expected value 2, got 1" in out
    assert "Replay: kit replay x.cli.wrong --params '{\"initval\": 1}'" in out
    as_json = run_kit(tmp_path, "explain", "x.cli.wrong", "--json", "--specs",
                      str(tmp_path / "specs"), "--report", str(tmp_path / "out"))
    data = json.loads(as_json.stdout)
    assert data["cite"]["quote"] == QUOTE and data["last_verdict"]["status"] == "deviates"


def test_explain_of_an_unknown_id_is_a_usage_error(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    shown = run_kit(tmp_path, "explain", "x.cli.nope", "--specs", str(tmp_path / "specs"))
    assert shown.ret == 3
    assert "no behaviour with id 'x.cli.nope'" in shown.stderr


def test_replay_with_params_shows_the_trace(tmp_path):
    text = spec_text(GOOD, WRONG)
    write_spec(tmp_path, text)
    replay = run_kit(tmp_path, "replay", "x.cli.wrong", "--specs", str(tmp_path / "specs"),
                     "--params", '{"initval": 42}')
    assert replay.ret == 1, replay.output
    out = replay.stdout
    assert 'counterexample: {"initval": 42}' in out
    read_line = line_of(text, "- read_u64", 2)
    assert f"ok   line {line_of(text, '- eventfd', 2)}: eventfd(initval=42, " \
           "flags=EFD_NONBLOCK)" in out
    assert f"FAIL line {read_line}: read_u64(fd=" in out
    assert "expected: value add($initval, 1)" in out
    assert "expected value 43, got 42" in out
    assert "1 deselected" in out                   # only the named behaviour ran


def test_replay_of_a_conforming_example_exits_0(tmp_path):
    write_spec(tmp_path, spec_text(GOOD, WRONG))
    replay = run_kit(tmp_path, "replay", "x.cli.good", "--specs", str(tmp_path / "specs"),
                     "--params", '{"initval": 42}')
    assert replay.ret == 0, replay.output
    assert "1 passed" in replay.stdout


def test_replay_of_a_conforming_example_shows_the_trace(tmp_path):
    write_spec(tmp_path, spec_text(GOOD))
    replay = run_kit(tmp_path, "replay", "x.cli.good", "--specs", str(tmp_path / "specs"),
                     "--params", '{"initval": 42}')
    assert "read_u64(fd=" in replay.stdout


def test_schema_prints_the_generated_schema(tmp_path):
    printed = run_kit(tmp_path, "schema")
    assert printed.ret == 0
    assert json.loads(printed.stdout) == build_schema()


def test_version(tmp_path):
    import kit

    shown = run_kit(tmp_path, "--version")
    assert shown.ret == 0 and shown.stdout.strip() == f"kit {kit.__version__}"


def test_run_json_prints_a_summary_for_scripts_on_stdout(tmp_path):
    ran = _run(tmp_path, GOOD, WRONG, args=("--json",))
    assert ran.ret == 1
    summary = json.loads(ran.stdout)  # stdout is nothing but the JSON
    assert summary["exit_code"] == 1
    assert summary["summary"]["statuses"] == {"conforms": 1, "deviates": 1}
    (problem,) = summary["problems"]
    assert problem["id"] == "x.cli.wrong" and problem["status"] == "deviates"
    assert problem["replay"].startswith("kit replay x.cli.wrong")
    assert "passed" in ran.stderr or "failed" in ran.stderr  # progress went to stderr
