"""What every kind of target provides to the matrix runner."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from kit.matrix import children
from kit.matrix.paths import log_tail


@dataclass
class RunRequest:
    """One conformance run to perform on a target."""

    repo: Path                 # the kit's checkout (specs/, .venv/) on the host
    out_dir: Path              # where this target's report.json must end up, on the host
    kit_args: list[str]        # extra arguments for `kit run` (profile, -k, seed ...)
    timeout: float             # seconds for the whole run on this target, boot included
    log: Path                  # the target's console / stderr goes here
    # Set in the environment of `kit run` on the target: KIT_TARGET_NAME and KIT_PLATFORM
    # name the column in the merged report and select platform-specific known deviations.
    env: dict = field(default_factory=dict)
    # the host CPUs this run may keep busy: the cores shared among the targets running at
    # once (a VM target sizes its guest by it)
    cpus: int = 1

    def __post_init__(self):
        # these paths cross into subprocesses, containers and guests, which do not share
        # our cwd (a guest mounts the share at this very path): absolute, no symlinks
        self.repo, self.out_dir, self.log = (Path(p).resolve()
                                             for p in (self.repo, self.out_dir, self.log))


@dataclass
class RunResult:
    target: str
    status: str                # "ran", "skipped", "failed", "timeout"
    reason: str = ""           # why skipped / failed
    report: Path | None = None  # report.json, when the run produced one
    exit_code: int | None = None
    duration: float = 0.0
    metadata: dict = field(default_factory=dict)  # how it was booted, image, accel ...


class Target:
    """A kind of target. Subclasses are constructed from a targets/*.yaml entry."""

    kind = "abstract"

    def __init__(self, name: str, spec: dict):
        self.name, self.spec = name, spec
        self.repo: Path = Path.cwd()   # the kit's checkout; set by the matrix runner
        self.source: tuple[Path | None, int] = (None, 0)   # target file and line of `name`

    def unavailable(self) -> str | None:
        """None if this machine can run the target, else the reason it cannot."""
        raise NotImplementedError

    def fetch_problem(self) -> str | None:
        """For `kit matrix --list`: why what the run would fetch cannot be fetched now
        (None: nothing to fetch, or it can be). May reach the network; never installs."""
        return None

    def prepare(self, log: Path) -> None:
        """Fetch and cache what the run needs (kernels, images); may take long, once."""

    def run(self, request: RunRequest) -> RunResult:
        raise NotImplementedError

    def replay(self, request: RunRequest, behaviour_id: str,
               params: str | None = None) -> RunResult:
        """One behaviour (with `params`, one exact example) run inside this target exactly
        as `kit matrix` runs the suite here: its own prepare and run, so the target's
        settings (runsc flags, kernel version, userland, booted kernel and its config) and
        its way of handing report.json back all apply. The plugin's replay options go after
        `kit run`'s `--`; the report keeps the example's whole trace."""
        replay = ["--", "--kit-id", behaviour_id]
        if params is not None:
            replay += ["--kit-params", params]
        self.prepare(request.log)
        return self.run(replace(request, kit_args=[*request.kit_args, *replay]))

    def run_command(self, request: RunRequest, cmd: list[str], metadata: dict,
                    **popen) -> RunResult:
        """Run `cmd` (a `kit run` that writes request.out_dir/report.json) within the
        request's time limit, its output into the request's log."""
        start = time.monotonic()
        stale = request.out_dir / "report.json"
        stale.unlink(missing_ok=True)  # only this run's report may count
        with open(request.log, "a") as log:
            try:
                proc = children.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=request.timeout, **popen)
            except subprocess.TimeoutExpired:
                return RunResult(self.name, "timeout", f"no result within {request.timeout}s",
                                 duration=time.monotonic() - start, metadata=metadata)
        report = request.out_dir / "report.json"
        found = report.exists()
        # the reason goes into matrix.md's table: one line, the log's last words included
        return RunResult(self.name, "ran" if found else "failed",
                         "" if found else f"no report.json (exit {proc.returncode}): "
                                          f"{log_tail(request.log)}; see {request.log}",
                         report=report if found else None, exit_code=proc.returncode,
                         duration=time.monotonic() - start, metadata=metadata)
