"""The running kernel, as a matrix column: `kit run` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from kit.matrix.base import RunRequest, RunResult, Target


def kit_command(request: RunRequest, report_dir: str, jobs: str = "1") -> list[str]:
    """`kit run` for a target, with the venv's Python so the target needs no PATH."""
    python = request.repo / ".venv" / "bin" / "python"
    exe = str(python) if python.exists() else sys.executable
    return [exe, "-m", "kit", "run", "--report", report_dir, "-n", jobs, *request.kit_args]


class HostTarget(Target):
    kind = "host"

    def unavailable(self) -> str | None:
        return None

    def run(self, request: RunRequest) -> RunResult:
        start = time.monotonic()
        env = dict(os.environ, **request.env)
        with open(request.log, "w") as log:
            try:
                proc = subprocess.run(kit_command(request, str(request.out_dir),
                                                  str(self.spec.get("jobs", "1"))),
                                      cwd=request.repo, stdout=log, stderr=subprocess.STDOUT,
                                      env=env, timeout=request.timeout, check=False)
            except subprocess.TimeoutExpired:
                return RunResult(self.name, "timeout", f"no result within {request.timeout}s",
                                 duration=time.monotonic() - start)
        report = request.out_dir / "report.json"
        return RunResult(self.name, "ran" if report.exists() else "failed",
                         "" if report.exists() else f"no report.json (exit {proc.returncode})",
                         report=report if report.exists() else None,
                         exit_code=proc.returncode, duration=time.monotonic() - start,
                         metadata={"how": "subprocess on the running kernel"})
