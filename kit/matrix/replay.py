"""`kit replay --target NAME ID`: one example replayed where it was seen.

The target is loaded from its file as `kit matrix` loads it, checked as `kit matrix` checks
it, and given the same environment (KIT_TARGET_NAME, KIT_PLATFORM, the target's kernel
version); it then runs the one behaviour through its own `prepare` and `run`
(Target.replay), so gVisor's flags, the userland's chroot and the booted kernel with its
config are those of the matrix run. The report.json that comes back holds the verdict and
the example's whole trace. The run's directory (report and log) is a fresh temporary one,
kept only when the target failed, so its log can be read.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kit.matrix.base import RunRequest, RunResult, Target
from kit.matrix.paths import OutputPathError, output_root, read_regular, target_paths
from kit.matrix.targets import TargetFileError, load_targets, target_env
from kit.report.target_replay import add_target_replays


class ReplayRefused(Exception):
    """The replay cannot start on this target (nothing ran): an unknown or unusable target,
    or one this machine cannot run."""


class ReplayFailed(Exception):
    """The target ran but gave back no verdict (no boot, a timeout, no report); the run's
    directory is kept and the message names its log."""


@dataclass
class TargetReplay:
    verdicts: list[dict]       # of the replayed behaviour, `replay` naming the target
    target: dict               # the report's description of the system that ran it
    result: RunResult


def runnable_target(targets_dir: Path, name: str, repo: Path) -> Target:
    """The target named `name`, ready to run here; ReplayRefused with the reason if not
    (the reason `kit matrix` would print when skipping it)."""
    try:
        [target] = load_targets(targets_dir, [name])
    except TargetFileError as exc:
        raise ReplayRefused(str(exc)) from None
    target.repo = repo
    reason = target.unavailable()
    if reason:
        raise ReplayRefused(f"target {name} cannot run on this machine: {reason}")
    return target


def targets_dir_argument(target: Target) -> str | None:
    """`--targets DIR` for the printed command, where the target file is not in the
    checkout's own targets/."""
    path = target.source[0]
    if path is None or Path(path).resolve().parent == (target.repo / "targets").resolve():
        return None
    return str(Path(path).resolve().parent)


def replay_on_target(target: Target, behaviour_id: str, params: str | None,
                     kit_args: list[str], progress=None) -> TargetReplay:
    """Run the one behaviour on `target` (from runnable_target)."""

    work = Path(tempfile.mkdtemp(prefix=f"kit-replay-{target.name}-"))
    try:
        out_dir, log = target_paths(output_root(work), target.name)
    except OutputPathError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise ReplayFailed(str(exc)) from None
    request = RunRequest(repo=target.repo, out_dir=out_dir, kit_args=kit_args,
                         timeout=float(target.spec.get("timeout", 1800)), log=log,
                         env=target_env(target))
    if progress:
        progress(f"running {behaviour_id} on target {target.name} (log: {log})")
    try:
        result = target.replay(request, behaviour_id, params)
    except Exception as exc:  # noqa: BLE001 - as in `kit matrix`: the target failed
        result = RunResult(target.name, "failed", f"{type(exc).__name__}: {exc}")
    except BaseException:     # Ctrl-C: the target's own code stopped its process or VM
        shutil.rmtree(work, ignore_errors=True)
        raise
    if result.status != "ran" or result.report is None:
        raise ReplayFailed(f"target {target.name} {result.status}: {result.reason} "
                           f"(kept: {work})")
    try:
        report = json.loads(read_regular(result.report))
        if not isinstance(report.get("behaviours"), list) or \
                not isinstance(report.get("target"), dict):
            raise TypeError("not a kit report")
    except (OSError, ValueError, TypeError, AttributeError, OutputPathError) as exc:
        raise ReplayFailed(f"target {target.name} gave back an unreadable report "
                           f"{result.report}: {exc} (kept: {work})") from None
    report["target"]["name"] = target.name
    add_target_replays(report, targets_dir_argument(target))
    verdicts = [dict(b, replay=b.get("target_replay") or b.get("replay", ""))
                for b in report["behaviours"] if b.get("id") == behaviour_id]
    if not verdicts:
        raise ReplayFailed(f"target {target.name} ran, but its report has no verdict for "
                           f"{behaviour_id} (kept: {work})")
    shutil.rmtree(work, ignore_errors=True)
    return TargetReplay(verdicts=verdicts, target=report["target"], result=result)
