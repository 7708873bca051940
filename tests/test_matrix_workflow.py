"""The CI workflow's matrix step is the README's command, with its relative default output
directory, and it works: the step's own command line is taken from
.github/workflows/matrix.yml and run here, for the host target from a directory that is not
the checkout, and (KIT_VM_TESTS=1) for a QEMU target from the checkout, as a user would."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from kit.cli import parser

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "matrix.yml"
SMALL = ["-k", "eventfd and create"]       # a handful of behaviours: seconds, not minutes


def target_steps() -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["target"]["steps"]


def step_command(target: str) -> list[str]:
    """The matrix step's `kit matrix` command for `target`, without sudo and the `||`
    that accepts exit code 1."""
    [line] = [s["run"] for s in target_steps() if "kit matrix" in s.get("run", "")]
    first = line.replace("${{ matrix.target }}", target).split("||")[0]
    words = shlex.split(first)
    while words and (words[0] == "sudo" or words[0].startswith("--preserve-env")):
        words.pop(0)
    return words


def uploaded(target: str) -> str:
    [step] = [s for s in target_steps() if s.get("uses", "").startswith(
        "actions/upload-artifact")]
    return step["with"]["path"].replace("${{ matrix.target }}", target)


def clean_env() -> dict:
    # an outer pytest or xdist worker must not leak into the kit's own pytest run
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "HYPOTHESIS_")) and k != "KIT_PLATFORM"}


def test_the_workflow_runs_the_readmes_command_with_its_default_output():
    command = step_command("host")
    assert command[:2] == [".venv/bin/kit", "matrix"]
    assert ".venv/bin/kit matrix" in (ROOT / "README.md").read_text()
    default = parser().parse_args(["matrix"]).output
    assert not Path(default).is_absolute()       # what made the guests write nowhere
    given = next((command[i + 1] for i, w in enumerate(command) if w in ("-o", "--output")),
                 default)
    assert not Path(given).is_absolute() and uploaded("host") == given


def run_step(target: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*step_command(target), *SMALL], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=3000, check=False)


def merged_job_finds(reports: Path) -> list[Path]:
    """What the merge job's `find reports -mindepth 3 -maxdepth 3 -name report.json` sees
    once each target's artifact is downloaded into reports/report-<target>/."""
    return sorted(p for p in reports.glob("*/*/report.json"))


@pytest.mark.timeout(900)
def test_the_workflow_step_runs_the_host_target_through_a_relative_path(tmp_path):
    # a cwd that is not the checkout: before the fix the host target's `kit run` (whose
    # cwd is the checkout) wrote its report beside the specs, and the matrix found none
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    ran = run_step("host", tmp_path)
    assert ran.returncode in (0, 1), ran.stdout + ran.stderr
    out = tmp_path / uploaded("host")
    report = json.loads((out / "host" / "report.json").read_text())
    assert report["behaviours"] and report["target"]["name"] == "host"
    matrix = json.loads((out / "matrix.json").read_text())
    assert [(t["name"], t["status"]) for t in matrix["targets"]] == [("host", "ran")]
    # the artifact, as the merge job downloads it, holds the report where it looks
    artifact = tmp_path / "reports" / "report-host"
    artifact.parent.mkdir()
    artifact.symlink_to(out)
    assert merged_job_finds(tmp_path / "reports") == [artifact / "host" / "report.json"]


@pytest.mark.skipif(os.environ.get("KIT_VM_TESTS") != "1",
                    reason="boots Debian's 6.12 kernel under QEMU, minutes under TCG: too "
                           "slow for every run; set KIT_VM_TESTS=1 to run it")
@pytest.mark.timeout(3600)
def test_the_workflow_step_runs_a_qemu_target_from_the_checkout():
    """The README's `kit matrix --only debian-6.12` with its default, relative -o, from the
    checkout, as CI runs it (writes report-matrix/ there, as the README says)."""
    from kit.matrix.targets import load_targets

    [target] = load_targets(ROOT / "targets", ["debian-6.12"])
    target.repo = ROOT
    reason = target.unavailable()
    if reason:
        pytest.skip(reason)
    out = ROOT / uploaded("debian-6.12")
    (out / "debian-6.12" / "report.json").unlink(missing_ok=True)
    ran = run_step("debian-6.12", ROOT)
    log = out / "debian-6.12.log"
    tail = log.read_text()[-3000:] if log.exists() else "(no log)"
    assert ran.returncode in (0, 1), f"{ran.stdout}{ran.stderr}\n{tail}"
    report = json.loads((out / "debian-6.12" / "report.json").read_text())
    matrix = json.loads((out / "matrix.json").read_text())
    [row] = matrix["targets"]
    assert row["status"] == "ran" and row["metadata"]["kernel_release"] == report[
        "target"]["release"]
    assert report["behaviours"]
