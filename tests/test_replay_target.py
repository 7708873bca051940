"""`kit replay --target NAME ID --params JSON` runs the example where it was seen, and the
merged report prints that command in each target's column.

The gVisor test is the point of it: a known deviation of gVisor's conforms when replayed on
the host (and would be judged by gVisor's own 4.4.0 uname, were it run inside runsc
without the target's settings); the command the merged report prints for gVisor's column
reproduces it. The other tests are the ways a replay is refused before anything runs
(exit 3) or fails on the target (exit 2), as a user sees them."""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import READS_COUNTER_WRONG, REPO, behaviour, run_kit, run_python, spec_text

from kit.report.target_replay import add_target_replays, target_replays
from kit.verdict import replay_command

# gVisor (runsc 0.0~20221219.0) adds the first 8 bytes of a longer write, the rule of
# Linux before 6.9: judged by 6.18 (the target's kernel_version) that is a known deviation
GVISOR_ID = "eventfd.write.long_buffer"
GVISOR_PARAMS = {"flags": 0, "size": 9, "value": 1}
HOST_ID, HOST_PARAMS = GVISOR_ID, json.dumps(GVISOR_PARAMS)


def write_target(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}")
    return path


def replay(*args: str):
    # a target's run (a userland, runsc) takes tens of seconds here, more under load
    return run_python(["-m", "kit", "replay", *args], cwd=REPO, timeout=1200)


# -- the command and the merged data ------------------------------------------------------


def test_the_target_replay_command_names_the_target_and_its_directory():
    assert replay_command("a.b", {"x": 1}, target="gvisor") == (
        """.venv/bin/kit replay --target gvisor a.b --params '{"x": 1}'""")
    assert replay_command("a.b", None, target="t1", targets_dir="/my targets") == (
        ".venv/bin/kit replay --target t1 --targets '/my targets' a.b")
    assert replay_command("a.b", {"x": 1}) == """kit replay a.b --params '{"x": 1}'"""


def test_a_matrix_targets_report_gets_its_own_replay_command_and_a_plain_run_does_not():
    deviating = {"id": "a.dev", "status": "deviates", "counterexample": {"n": 2},
                 "replay": "kit replay a.dev --params '{\"n\": 2}'"}
    conforming = {"id": "a.ok", "status": "conforms", "counterexample": None, "replay": ""}
    named = {"target": {"name": "gvisor"}, "behaviours": [dict(deviating), dict(conforming)]}
    add_target_replays(named)
    assert target_replays(named) == {
        "a.dev": """.venv/bin/kit replay --target gvisor a.dev --params '{"n": 2}'"""}
    plain = {"target": {"release": "6.18"}, "behaviours": [dict(deviating)]}
    assert target_replays(add_target_replays(plain)) == {}


WRONG = spec_text(behaviour("demo.read.wrong", READS_COUNTER_WRONG,
                            title="A deliberately wrong expectation"), family="demo")


def deviating_report(tmp_path: Path) -> dict:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "demo.yaml").write_text(WRONG)
    out = tmp_path / "report"
    run_kit(tmp_path, "run", "--specs", str(tmp_path / "specs"), "--report", str(out),
            "-n", "0")
    report = json.loads((out / "report.json").read_text())
    [b] = report["behaviours"]
    assert b["status"] == "deviates" and b["replay"].startswith("kit replay demo.read.wrong")
    return report


def test_the_merged_matrix_prints_each_targets_replay_command(tmp_path):
    from kit.matrix.base import RunResult
    from kit.matrix.runner import write_matrix
    from kit.matrix.targets import load_targets

    report = deviating_report(tmp_path)
    params = report["behaviours"][0]["counterexample"]
    targets_dir = tmp_path / "targets"     # not the checkout's: the command must say so
    targets_dir.mkdir()
    for name in ("host", "gvisor"):
        shutil.copy(REPO / "targets" / f"{name}.yaml", targets_dir)
    targets = load_targets(targets_dir)
    results = []
    for target in targets:
        target.repo = REPO
        mine = json.loads(json.dumps(report))
        if target.name == "host":          # seen only on gVisor
            mine["behaviours"][0].update(status="conforms", replay="", trace=[],
                                         counterexample=None)
        path = tmp_path / target.name / "report.json"
        path.parent.mkdir()
        path.write_text(json.dumps(mine))
        results.append(RunResult(target.name, "ran", report=path, exit_code=1))
    out = tmp_path / "matrix"
    out.mkdir()
    matrix = write_matrix(out, targets, results)

    command = replay_command("demo.read.wrong", params, target="gvisor",
                             targets_dir=str(targets_dir))
    assert {t["name"]: t["replay"] for t in matrix["targets"]} == {
        "gvisor": {"demo.read.wrong": command}, "host": {}}
    assert json.loads((out / "matrix.json").read_text())["targets"] == matrix["targets"]
    assert f"  - replay on gvisor: `{command}`" in (out / "matrix.md").read_text()
    assert report_replays((out / "report.html").read_text()) == [command]


# -- refused before anything runs: exit 3 -------------------------------------------------


def test_an_unknown_target_is_a_usage_error_naming_the_directory(tmp_path):
    ran = replay("--target", "nosuch", HOST_ID, "--params", HOST_PARAMS)
    assert ran.ret == 3, ran.output
    assert "no target named nosuch in" in ran.stderr and "nothing was run" in ran.stderr


def test_bad_params_are_refused_before_the_target_is_looked_at():
    ran = replay("--target", "nosuch", HOST_ID, "--params", '{"flags": 0, "size": "nine"}')
    assert ran.ret == 3, ran.output
    assert "nothing was run" in ran.stderr and "no target named" not in ran.stderr


def test_an_unknown_behaviour_is_refused_before_the_target_runs():
    ran = replay("--target", "host", "no.such.behaviour")
    assert ran.ret == 3, ran.output
    assert "no behaviour with id 'no.such.behaviour'" in ran.stderr


def test_a_target_this_machine_cannot_run_exits_3_with_the_reason(tmp_path):
    targets = tmp_path / "targets"
    write_target(targets, "sandbox", "kind: gvisor\nrunsc: /nonexistent/runsc\n")
    ran = replay("--target", "sandbox", "--targets", str(targets), HOST_ID,
                 "--params", HOST_PARAMS)
    assert ran.ret == 3, ran.output
    assert "target sandbox cannot run on this machine: runsc is not installed" in ran.stderr


def test_a_broken_target_file_is_named_with_its_line_and_field(tmp_path):
    targets = tmp_path / "targets"
    path = write_target(targets, "old", "kind: gvisor\nkernel_version: 5.10\n")
    ran = replay("--target", "old", "--targets", str(targets), HOST_ID)
    assert ran.ret == 3, ran.output
    assert f"{path}:3: field kernel_version" in ran.stderr


def test_specs_and_targets_options_are_refused_where_they_cannot_apply(tmp_path):
    (tmp_path / "specs").mkdir()
    ran = replay("--target", "host", "--specs", str(tmp_path / "specs"), HOST_ID)
    assert ran.ret == 3 and "--specs cannot be combined with --target" in ran.stderr
    ran = replay("--targets", str(tmp_path), HOST_ID)
    assert ran.ret == 3 and "give --target NAME too" in ran.stderr


# -- on a target ------------------------------------------------------------------------


def test_a_replay_on_the_host_target_prints_the_trace_and_the_target(tmp_path):
    ran = replay("--target", "host", HOST_ID, "--params", HOST_PARAMS)
    assert ran.ret == 0, ran.output
    assert ran.stdout.startswith("on target host (subprocess on the running kernel; kernel ")
    assert f"{HOST_ID} conforms" in ran.stdout and "write_u64(size=9" in ran.stdout
    assert f"running {HOST_ID} on target host (log: " in ran.stderr
    # the run's directory goes once the verdict is back
    work = Path(re.search(r"\(log: (.*)\)", ran.stderr).group(1)).parent
    assert not work.exists()


def test_a_target_that_fails_exits_2_and_keeps_its_log(tmp_path):
    targets = tmp_path / "targets"
    write_target(targets, "impatient", "kind: host\ntimeout: 0.01\n")
    ran = replay("--target", "impatient", "--targets", str(targets), HOST_ID,
                 "--params", HOST_PARAMS)
    assert ran.ret == 2, ran.output
    assert "target impatient timeout: no result within 0.01s" in ran.stderr
    kept = Path(re.search(r"\(kept: (.*?)\)", ran.stderr).group(1))
    try:
        assert (kept / "impatient.log").exists()
    finally:
        shutil.rmtree(kept, ignore_errors=True)


# -- gVisor: the printed command reproduces the known deviation ---------------------------


def gvisor_unavailable() -> str | None:
    from kit.matrix.targets import load_targets

    [target] = load_targets(REPO / "targets", ["gvisor"])
    return target.unavailable()


def report_replays(page: str) -> list[str]:
    return [html.unescape(m) for m in re.findall(r'<code class="replay">(.*?)</code>', page)]


def run_printed(command: str) -> subprocess.CompletedProcess:
    """The command as a user pastes it, in the checkout (where `.venv/bin/kit` is)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "HYPOTHESIS_", "KIT_"))}
    return subprocess.run(["bash", "-c", command], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


@pytest.mark.skipif(not shutil.which("runsc"),
                    reason="runsc is not installed (./bootstrap --matrix installs it)")
@pytest.mark.timeout(1800)
def test_the_command_printed_for_gvisor_reproduces_its_known_deviation(tmp_path):
    reason = gvisor_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "matrix"
    matrix = subprocess.run(
        [sys.executable, "-m", "kit", "matrix", "--only", "gvisor", "-k", GVISOR_ID,
         "-o", str(out), "--json"], cwd=REPO, capture_output=True, text=True, timeout=900,
        check=False, env={k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "KIT_"))})
    assert matrix.returncode in (0, 1), matrix.stdout + matrix.stderr
    [row] = json.loads((out / "matrix.json").read_text())["targets"]
    command = row["replay"][GVISOR_ID]
    assert command == replay_command(GVISOR_ID, GVISOR_PARAMS, target="gvisor")
    assert command in report_replays((out / "report.html").read_text())
    # the report gVisor wrote has the deviation as known, with the plain command
    [seen] = [b for b in json.loads((out / "gvisor" / "report.json").read_text())[
        "behaviours"] if b["id"] == GVISOR_ID]
    assert seen["status"] == "deviates" and seen["known_deviation"]

    here = run_printed(seen["replay"].replace("kit replay", ".venv/bin/kit replay", 1))
    assert here.returncode == 0 and f"{GVISOR_ID} conforms" in here.stdout, \
        "the plain command should not reproduce it on the host: " + here.stdout + here.stderr

    there = run_printed(command)
    assert there.returncode == 0, there.stdout + there.stderr   # known: not counted
    assert there.stdout.startswith("on target gvisor (runsc do")
    assert "judged as 6.18 from target override" in there.stdout
    assert f"{GVISOR_ID} deviates" in there.stdout
    assert f"known deviation: {seen['known_deviation']}" in there.stdout
    assert "write_u64(size=9, fd=" in there.stdout and "-> 8" in there.stdout
    assert f"replay: {command}" in there.stdout

    # CI merges the downloaded reports with `kit report --merge`: the same command there
    merged = tmp_path / "merged"
    ran = run_kit(REPO, "report", "--merge", str(out / "gvisor"), "-o", str(merged))
    assert ran.ret == 0, ran.output
    assert command in report_replays((merged / "report.html").read_text())


def test_the_replay_command_is_one_a_shell_reads_back_as_written():
    command = replay_command("x.y", {"s": "it's \"quoted\""}, target="gvisor")
    words = shlex.split(command)
    assert words[:5] == [".venv/bin/kit", "replay", "--target", "gvisor", "x.y"]
    assert json.loads(words[-1]) == {"s": "it's \"quoted\""}


# -- the i386 userland: a deviation only a 32-bit caller sees --------------------------------


@pytest.mark.timeout(1800)
def test_a_replay_in_the_i386_userland_reproduces_what_only_a_32_bit_caller_sees():
    from kit.matrix.targets import load_targets

    [target] = load_targets(REPO / "targets", ["debian-i386"])
    target.repo = REPO
    reason = target.unavailable()
    if reason:
        pytest.skip(reason)
    # timerfd has no compat_ioctl: TFD_IOC_SET_TICKS fails with ENOTTY for a 32-bit process
    args = ["timerfd.ioctl.set_ticks.read", "--params", '{"ticks": 5, "value": 0}']
    here = replay(*args)
    assert here.ret == 0 and "timerfd.ioctl.set_ticks.read conforms" in here.stdout, \
        here.output
    there = replay("--target", "debian-i386", *args)
    assert there.ret == 0, there.output       # a known deviation: not counted
    assert "timerfd.ioctl.set_ticks.read deviates" in there.stdout
    assert "known deviation: Linux: timerfd_fops has no .compat_ioctl" in there.stdout
    assert "timerfd_set_ticks(" in there.stdout and "ENOTTY" in there.stdout


def test_a_replay_command_names_a_profile_other_than_quick():
    """The profile binds $quiet and $loop_share: a thorough example replays as thorough."""
    assert replay_command("a.b", {"x": 1}, profile="thorough") == \
        "kit replay a.b --profile thorough --params '{\"x\": 1}'"
    assert "--profile" not in replay_command("a.b", {"x": 1})
