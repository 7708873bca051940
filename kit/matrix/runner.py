"""`kit matrix`: every available target, in parallel where cores allow, with progress,
then one merged report (report.html with a column per target, matrix.json, matrix.md).

Layout of the output directory:
    <out>/<target>/report.json   each target's own report
    <out>/<target>.log           its console or stderr
    <out>/report.html            the merged page
    <out>/matrix.json            per-target metadata and results, skipped targets, differences
    <out>/matrix.md              the differences, for CI logs and pull requests

The output directory is resolved to an absolute path first (see paths.py): targets run in
other processes, containers and VMs, where a relative path means something else.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kit.matrix import children
from kit.matrix.base import RunRequest, RunResult, Target
from kit.matrix.paths import (
    OutputPathError,
    output_root,
    read_regular,
    target_paths,
)
from kit.matrix.phases import seconds_text
from kit.matrix.phases import summary as phase_summary
from kit.matrix.replay import targets_dir_argument
from kit.matrix.targets import target_env
from kit.report.atomic import write_atomic
from kit.report.diff import differences
from kit.report.html import write_html
from kit.report.markdown import render_matrix_markdown
from kit.report.ranking import deviation_counts
from kit.report.target_replay import add_target_replays, target_replays


class Progress:
    """One line per event, plus a heartbeat naming what is still running."""

    def __init__(self, stream=sys.stderr, every: float = 30.0):
        self.stream, self.every = stream, every
        self.start = time.monotonic()
        self.running: dict[str, float] = {}
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.beat = threading.Thread(target=self._heartbeat, name="kit-matrix-progress",
                                     daemon=True)
        self.beat.start()

    def say(self, message: str) -> None:
        with self.lock:
            elapsed = time.monotonic() - self.start
            print(f"[{elapsed:6.0f}s] {message}", file=self.stream, flush=True)

    def begin(self, name: str, what: str) -> None:
        self.running[name] = time.monotonic()
        self.say(f"{name}: {what}")

    def end(self, name: str, what: str) -> None:
        self.running.pop(name, None)
        self.say(f"{name}: {what}")

    def _heartbeat(self) -> None:
        while not self.done.wait(self.every):
            if self.running:
                now = time.monotonic()
                self.say("still running: " + ", ".join(
                    f"{n} ({now - t:.0f}s)" for n, t in self.running.items()))

    def close(self) -> None:
        self.done.set()
        self.beat.join()


def _one(target: Target, request: RunRequest, progress: Progress) -> RunResult:
    progress.begin(target.name, f"preparing (log: {request.log})")
    try:
        target.prepare(request.log)
        progress.say(f"{target.name}: running")
        result = target.run(request)
    except Exception as exc:  # noqa: BLE001 - one broken target must not sink the matrix
        result = RunResult(target.name, "failed", f"{type(exc).__name__}: {exc}")
    progress.end(target.name, outcome_line(result))
    return result


def outcome_line(result: RunResult) -> str:
    """`ran (3m10s: boot 25s, python 40s, suite 2m05s; 4m50s of CPU)`: the time split
    where the target measured one (the VM targets), else the whole duration."""
    summary = result.status if not result.reason else f"{result.status}: {result.reason}"
    split = phase_summary(result.metadata.get("phases") or {})
    if split and result.metadata.get("qemu_cpu_seconds") is not None:
        # on a loaded host the wall clock says little: what the VM itself cost
        split += f"; {seconds_text(result.metadata['qemu_cpu_seconds'])} of CPU"
    took = seconds_text(result.duration)
    return f"{summary} ({took}: {split})" if split else f"{summary} ({took})"


def run_matrix(targets: list[Target], *, repo: Path, out: Path, kit_args: list[str],
               jobs: int | None = None, progress: Progress | None = None) -> dict:
    """Raises OutputPathError, before any target runs, if `out` cannot be written."""
    out = output_root(out)
    repo = Path(repo).resolve()
    progress = progress or Progress()
    results: list[RunResult] = []
    runnable = []
    requests = {}
    for target in targets:
        target.repo = repo
        try:
            out_dir, log = target_paths(out, target.name)
        except OutputPathError as exc:
            progress.say(f"{target.name}: failed: {exc}")
            results.append(RunResult(target.name, "failed", str(exc)))
            continue
        reason = target.unavailable()
        if reason:
            progress.say(f"{target.name}: skipped: {reason}")
            results.append(RunResult(target.name, "skipped", reason))
            continue
        runnable.append(target)
        requests[target.name] = RunRequest(
            repo=repo, out_dir=out_dir, kit_args=kit_args,
            timeout=float(target.spec.get("timeout", 1800)), log=log, env=target_env(target))
    runnable = longest_first(runnable, out)
    jobs = jobs or max(1, min(len(runnable), os.cpu_count() or 1))
    for request in requests.values():
        request.cpus = max(1, (os.cpu_count() or 1) // jobs)
    progress.say(f"running {len(runnable)} target(s), {jobs} at a time; "
                 f"{len(targets) - len(runnable)} skipped")
    pool = ThreadPoolExecutor(max_workers=jobs)
    futures = {t.name: pool.submit(_one, t, requests[t.name], progress) for t in runnable}
    try:
        results += [f.result() for f in futures.values()]
    except (KeyboardInterrupt, children.Signalled) as exc:
        # Ctrl-C, SIGTERM or SIGHUP: take every target's processes down, then merge what
        # finished, so that the reports of the targets done so far are not lost
        stopped_by = children.stopped_by(exc)
        finished = {name for name, future in futures.items() if future.done()}
        progress.say(f"stopping ({stopped_by}): ending every target's processes")
        children.stop_all()
        pool.shutdown(wait=True, cancel_futures=True)
        results += [future.result() if name in finished else
                    RunResult(name, "failed", f"stopped ({stopped_by}) before it "
                              f"{'started' if future.cancelled() else 'finished'}")
                    for name, future in futures.items()]
        progress.close()
        write_matrix(out, targets, results)
        raise
    finally:
        pool.shutdown(wait=True)
        progress.close()
    return write_matrix(out, targets, results)


def longest_first(targets: list[Target], out: Path) -> list[Target]:
    """The targets in the order to start them: those that took longest in the last run
    into `out` (its matrix.json) first, so that a long VM does not start last and run on
    alone; a target without a time there (new, or never run) counts as longest. Without
    an earlier run, the order of the target files."""
    try:
        earlier = json.loads((out / "matrix.json").read_text())["targets"]
        took = {t["name"]: float(t["duration"]) for t in earlier
                if t.get("status") == "ran" and t.get("duration")}
    except (OSError, ValueError, KeyError, TypeError):
        return targets
    return sorted(targets, key=lambda t: -took.get(t.name, float("inf")))


def write_matrix(out: Path, targets: list[Target], results: list[RunResult]) -> dict:
    by_name = {t.name: t for t in targets}
    reports = []
    for result in results:
        # what the merged report groups targets by (real kernels, other implementations,
        # userlands), known even for a target that did not run
        target = by_name[result.target]
        result.metadata.setdefault("kind", target.kind)
        result.metadata.setdefault("platform", target_env(target)["KIT_PLATFORM"])
        if result.report:
            try:
                report = json.loads(read_regular(result.report))
                if not isinstance(report, dict) or not isinstance(report.get("target"), dict):
                    raise TypeError("not a kit report (no `target` object)")
            except (OSError, ValueError, TypeError, OutputPathError) as exc:
                result.status, result.reason = "failed", f"unreadable {result.report}: {exc}"
                result.report = None
                continue
            report["target"]["name"] = result.target
            report["target"]["how"] = result.metadata.get("how", "")
            report["target"]["kind"] = result.metadata["kind"]
            report["target"]["description"] = by_name[result.target].spec.get(
                "description", "").strip()
            add_target_replays(report, targets_dir_argument(by_name[result.target]))
            reports.append(report)
    skipped = [(r.target, f"{r.status}: {r.reason}") for r in results if r.status != "ran"]
    diffs = differences(reports)
    matrix = {
        "targets": [{"name": r.target, "status": r.status, "reason": r.reason,
                     "exit_code": r.exit_code, "duration": round(r.duration, 1),
                     "metadata": r.metadata,
                     "deviations": next((deviation_counts(rep["behaviours"]) for rep in reports
                                         if rep["target"]["name"] == r.target), None),
                     "target": next((rep["target"] for rep in reports
                                     if rep["target"]["name"] == r.target), None),
                     # behaviour id -> the command replaying its example on this target
                     "replay": next((target_replays(rep) for rep in reports
                                     if rep["target"]["name"] == r.target), {})}
                    for r in results],
        "differences": diffs,
    }
    write_atomic(out / "matrix.json", json.dumps(matrix, indent=2, default=str) + "\n")
    write_atomic(out / "matrix.md", render_matrix_markdown(matrix))
    write_html(out / "report.html", reports, skipped=skipped,
               title="Syscall conformance matrix")
    return matrix
