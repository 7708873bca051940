"""gVisor: a second, independent implementation of the Linux syscall interface.

`runsc do` runs the kit in a sandbox whose root is the host's, read-only with a tmpfs
overlay; the report comes back on stdout after a marker line, since nothing written
inside the sandbox reaches the host.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time

from kit.matrix import children
from kit.matrix.base import RunRequest, RunResult, Target
from kit.matrix.host import kit_command
from kit.report.atomic import write_atomic

MARKER = "=====KIT-REPORT-JSON====="


class GvisorTarget(Target):
    kind = "gvisor"

    @property
    def runsc(self) -> str | None:
        return shutil.which(self.spec.get("runsc", "runsc"))

    def unavailable(self) -> str | None:
        if self.runsc is None:
            return "runsc is not installed (Debian package: runsc)"
        if os.geteuid() != 0:
            return "`runsc do` needs root"
        return None

    def version(self) -> str:
        out = subprocess.run([self.runsc, "--version"], capture_output=True, text=True,
                             check=False, timeout=30).stdout
        return out.splitlines()[0] if out else "unknown"

    def run(self, request: RunRequest) -> RunResult:
        start = time.monotonic()
        inner_dir = "/tmp/kit-report"
        kit = shlex.join(kit_command(request, inner_dir))
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in request.env.items())
        script = (f"{exports} {kit} >&2; code=$?; echo {MARKER}; "
                  f"cat {inner_dir}/report.json; exit $code")
        cmd = [self.runsc, "--network=none", *self.spec.get("runsc_flags", []), "do",
               "--cwd", str(request.repo), "/bin/sh", "-c", script]
        with open(request.log, "w") as log:
            try:
                proc = children.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True,
                                    timeout=request.timeout)
            except subprocess.TimeoutExpired:
                return RunResult(self.name, "timeout", f"no result within {request.timeout}s",
                                 duration=time.monotonic() - start)
        meta = {"how": "runsc do --network=none", "runsc": self.version()}
        _, found, payload = proc.stdout.partition(MARKER)
        if not found or not payload.strip():
            return RunResult(self.name, "failed", f"no report came back (exit "
                             f"{proc.returncode}); see {request.log}",
                             exit_code=proc.returncode, duration=time.monotonic() - start,
                             metadata=meta)
        request.out_dir.mkdir(parents=True, exist_ok=True)
        report = request.out_dir / "report.json"
        write_atomic(report, payload.strip() + "\n")
        return RunResult(self.name, "ran", report=report, exit_code=proc.returncode,
                         duration=time.monotonic() - start, metadata=meta)
