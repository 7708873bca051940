"""The running kernel, as a matrix column: `kit run` in a subprocess."""

from __future__ import annotations

import os
import sys

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
        return self.run_command(
            request, kit_command(request, str(request.out_dir), str(self.spec.get("jobs", "1"))),
            {"how": "subprocess on the running kernel"}, cwd=request.repo,
            env=dict(os.environ, **request.env))
