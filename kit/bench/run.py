"""The notification benchmark: eventfd, eventfd in semaphore mode, a pipe and a real-time
signal, each waited for directly or through epoll, between two threads and between two
processes.

Every combination runs notify.c once, bounded by a subprocess timeout (the helper also
arms its own alarm), so a broken kernel cannot hang the kit. Each result row is flat:

    mechanism, via, mode, rounds, rtt_median_ns, rtt_p99_ns, rtt_mean_ns, rtt_min_ns,
    burst, burst_ns, throughput_per_s, error

A combination that fails carries its error string and None for the figures; without a C
compiler every row is skipped with the reason as its error (no Python fallback: Python
would blur the figures).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from kit.native.build import BuildError, build

MECHANISMS = ("eventfd", "eventfd-sem", "pipe", "signal")
VIAS = ("direct", "epoll")
MODES = ("thread", "process")
FIGURES = ("rounds", "rtt_median_ns", "rtt_p99_ns", "rtt_mean_ns", "rtt_min_ns", "burst",
           "burst_ns", "throughput_per_s")
DEFAULT_ROUNDS = 10_000
SOURCE = Path(__file__).with_name("notify.c")


def combinations():
    for mechanism in MECHANISMS:
        for via in VIAS:
            for mode in MODES:
                yield mechanism, via, mode


def build_helper(cache: Path | None = None) -> Path:
    """The compiled helper, built once per version of notify.c (kit.native.build caches it)."""
    return build(SOURCE, "notify", cache=cache,
                 what="the benchmark's helper (Python timing would blur the figures)")


def _row(mechanism: str, via: str, mode: str, **figures) -> dict:
    row = {"mechanism": mechanism, "via": via, "mode": mode}
    row.update({k: figures.get(k) for k in FIGURES})
    row["error"] = figures.get("error")
    return row


def run_one(exe: Path, mechanism: str, via: str, mode: str, rounds: int,
            burst: int | None = None, timeout: float = 20.0) -> dict:
    """One combination: its figures, or its error. Never raises for a kernel's failure."""
    burst = burst or rounds * 10
    alarm = max(int(timeout) - 1, 1)  # the helper's own alarm fires first, with a message
    cmd = [str(exe), mechanism, via, mode, str(rounds), str(burst), str(alarm)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return _row(mechanism, via, mode, error=f"timed out after {timeout:g} s")
    except OSError as exc:
        return _row(mechanism, via, mode, error=f"cannot run the helper: {exc}")
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[0]) if lines else {}
    except ValueError:
        result = {}
    if not isinstance(result, dict):
        result = {}
    if done.returncode == 0 and "error" not in result and result.get("rtt_median_ns"):
        return _row(mechanism, via, mode, **result)
    error = result.get("error")
    if not error:
        detail = done.stderr.strip()[:300] or done.stdout.strip()[:300]
        how = (f"killed by signal {-done.returncode}" if done.returncode < 0
               else f"exit status {done.returncode}")
        error = f"helper failed ({how})" + (f": {detail}" if detail else "")
    return _row(mechanism, via, mode, error=error)


def run_all(rounds: int = DEFAULT_ROUNDS, timeout: float = 20.0, progress=None) -> list[dict]:
    """Every mechanism x via x mode combination, in a fixed order."""
    try:
        exe = build_helper()
    except BuildError as exc:
        return [_row(*combo, error=f"skipped: {exc}") for combo in combinations()]
    rows = []
    for combo in combinations():
        if progress:
            progress(combo)
        rows.append(run_one(exe, *combo, rounds=rounds, timeout=timeout))
    return rows


def _us(ns) -> str:
    return "-" if ns is None else f"{ns / 1000:.1f}"


def render(rows: list[dict]) -> str:
    head = (f"{'mechanism':<12} {'via':<7} {'mode':<8} {'rtt median µs':>13} "
            f"{'rtt p99 µs':>11} {'notifications/s':>16}")
    lines = [head, "-" * len(head)]
    for r in rows:
        start = f"{r['mechanism']:<12} {r['via']:<7} {r['mode']:<8}"
        if r["error"]:
            label = "" if r["error"].startswith("skipped:") else "error: "
            lines.append(f"{start} {label}{r['error']}")
        else:
            lines.append(f"{start} {_us(r['rtt_median_ns']):>13} {_us(r['rtt_p99_ns']):>11} "
                         f"{r['throughput_per_s']:>16,.0f}")
    return "\n".join(lines)
