#!/usr/bin/env python3
"""The kit's performance benchmark: prints figures and budget ratios, asserts nothing.

    .venv/bin/python benchmarks/run.py            # everything (the whole suite twice: minutes)
    .venv/bin/python benchmarks/run.py --quick    # only the per-call figures (seconds)
    .venv/bin/python benchmarks/run.py --json out.json

Parts (see benchmarks/README.md for what each figure means):
  1. the whole conformance run on the running kernel (`python -m kit run`, serial and with
     `-n auto`): wall time, behaviours and Hypothesis examples per second, where the time went;
  2. the adapter's cost per call: eventfd write_u64+read_u64 through kit.adapter, against
     os.write/os.read and against the same pair in C (a tiny program built here with cc -O2);
  3. the engine: the interpreter's cost per step, the watchdog guard of a blocking call,
     Hypothesis's cost per example, and the forked-child isolation's cost per behaviour.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:  # run from a checkout without an installed kit
    sys.path.insert(0, str(REPO))

# Budgets from the issues. The suite: first "the quick profile of the whole suite finishes
# in well under a minute on 2 cores", then the concurrency issue's "within 20 s wall on 2
# cores with -n 2" (-n auto is 2 there). The adapter: "within a small factor of
# os.read/os.write", taken as 10: both sides make the same two system calls, so the factor
# is the adapter's Python work (ctypes conversions, the Result record, errno capture).
BUDGET_SUITE_PARALLEL = 20.0      # seconds, quick profile, -n auto on 2 cores
BUDGET_ADAPTER_OVER_OS = 10.0     # ratio

EFD_NONBLOCK = 0o4000

C_SOURCE = r"""
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* write(2)+read(2) of 8 bytes on a nonblocking eventfd, N times; prints ns per pair. */
int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    int fd = eventfd(0, EFD_NONBLOCK);
    if (fd < 0) { perror("eventfd"); return 2; }
    uint64_t one = 1, got = 0;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        if (write(fd, &one, sizeof one) != 8) { perror("write"); return 1; }
        if (read(fd, &got, sizeof got) != 8 || got != 1) { perror("read"); return 1; }
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("%.1f\n", ns / n);
    return 0;
}
"""

STEP_SPEC = """
behaviours:
  - id: bench.pairs
    title: An eventfd, then ten write/read pairs with expectations
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "returns 8 bytes containing that value"}
    steps:
      - eventfd: {initval: 0, flags: EFD_NONBLOCK}
        as: efd
""" + """      - write_u64: {fd: $efd, value: 1}
        expect: {returns: 8}
      - read_u64: {fd: $efd}
        expect: {returns: 8, value: 1}
""" * 10 + """
  - id: bench.compute
    title: Twenty-one compute steps (no system call, no watchdog)
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "returns 8 bytes containing that value"}
    steps:
""" + """      - compute: {value: 1}
        expect: {value: 1}
""" * 21 + """
  - id: bench.one
    title: One example, no parameters
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "returns 8 bytes containing that value"}
    steps:
      - eventfd: {initval: 0, flags: EFD_NONBLOCK}
        as: efd
      - write_u64: {fd: $efd, value: 1}
        expect: {returns: 8}
      - read_u64: {fd: $efd}
        expect: {returns: 8, value: 1}
  - id: bench.params
    title: The same steps, with a drawn parameter
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "returns 8 bytes containing that value"}
    params:
      value: {integers: {min: 1, max: 1000}}
    max_examples: 25
    steps:
      - eventfd: {initval: 0, flags: EFD_NONBLOCK}
        as: efd
      - write_u64: {fd: $efd, value: $value}
        expect: {returns: 8}
      - read_u64: {fd: $efd}
        expect: {returns: 8, value: $value}
"""


# -- timing helpers -------------------------------------------------------------------------


def best_ns(loop, iterations: int, repeats: int) -> tuple[float, list[float]]:
    """ns per iteration of `loop(iterations)`: the best of `repeats` runs, and all of them.

    The best run is the figure: on a shared machine noise only ever adds time."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        loop(iterations)
        runs.append((time.perf_counter_ns() - start) / iterations)
    return min(runs), runs


# -- part 2: the adapter against os and C ---------------------------------------------------


def build_c(workdir: Path) -> Path | None:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None
    src, exe = workdir / "pair.c", workdir / "pair"
    src.write_text(C_SOURCE)
    subprocess.run([compiler, "-O2", "-o", str(exe), str(src)], check=True,
                   capture_output=True, text=True)
    return exe


def bench_adapter(iterations: int, repeats: int, c_iterations: int | None = None) -> dict:
    """write_u64+read_u64 pairs on one EFD_NONBLOCK eventfd: adapter, raw ctypes, os, C.

    The variants take turns within every repeat, so a burst of load from elsewhere hits
    all of them alike; the best repeat of each is its figure."""
    import ctypes

    from kit.adapter import eventfd, fds
    from kit.adapter.libc import libc

    created = eventfd.eventfd(0, EFD_NONBLOCK)
    if not created.ok:
        raise RuntimeError(f"eventfd failed: {created.errno}")
    fd = created.ret
    tmp = tempfile.TemporaryDirectory(prefix="kit-bench-c-")
    out: dict = {"iterations": iterations, "repeats": repeats, "c_pair_ns": None}
    try:
        # The pair must really work before it is timed.
        wrote, read = fds.write_u64(fd, 1), fds.read_u64(fd)
        if (wrote.ret, read.ret, read.value) != (8, 8, 1):
            raise RuntimeError(f"adapter pair failed: {wrote} {read}")
        write_u64, read_u64 = fds.write_u64, fds.read_u64

        def adapter(n):
            for _ in range(n):
                write_u64(fd, 1)
                read_u64(fd)

        one = struct.pack("=Q", 1)
        os_write, os_read = os.write, os.read

        def plain_os(n):
            for _ in range(n):
                os_write(fd, one)
                os_read(fd, 8)

        buf = ctypes.create_string_buffer(8)
        c_write, c_read = libc.write, libc.read

        def raw_ctypes(n):  # the same foreign functions, argtypes and all, no adapter around
            for _ in range(n):
                c_write(fd, one, 8)
                c_read(fd, buf, 8)

        loops = {"adapter": adapter, "os": plain_os, "ctypes": raw_ctypes}
        runs: dict[str, list[float]] = {name: [] for name in (*loops, "c")}
        try:
            exe = build_c(Path(tmp.name))
            if exe is None:
                out["c_note"] = "no C compiler (cc/gcc) on PATH"
        except subprocess.CalledProcessError as exc:
            exe, out["c_note"] = None, f"cc failed: {exc.stderr.strip()[:200]}"
        c_n = c_iterations or iterations * 10
        for _ in range(repeats):
            for name, loop in loops.items():
                runs[name].append(best_ns(loop, iterations, 1)[0])
            if exe is not None:  # the program times its own loop, not its start-up
                runs["c"].append(float(subprocess.run(
                    [str(exe), str(c_n)], check=True, capture_output=True, text=True).stdout))
    finally:
        os.close(fd)
        tmp.cleanup()
    for name, values in runs.items():
        if values:
            out[f"{name}_pair_ns"], out[f"{name}_pair_runs"] = min(values), values
    if runs["c"]:
        out["c_iterations"] = c_n
    out["adapter_over_os"] = out["adapter_pair_ns"] / out["os_pair_ns"]
    out["adapter_over_c"] = (out["adapter_pair_ns"] / out["c_pair_ns"]
                             if out.get("c_pair_ns") else None)
    return out


# -- part 3: the engine ----------------------------------------------------------------------


def _behaviours() -> dict:
    from kit.spec.loader import load_text

    loaded = load_text(STEP_SPEC, "benchmarks/bench.yaml")
    if loaded.errors:
        raise RuntimeError("; ".join(str(e) for e in loaded.errors))
    return {b.id: b for b in loaded.behaviours}


def bench_engine(runs: int, repeats: int, isolation_runs: int) -> dict:
    from kit.adapter import watchdog
    from kit.engine import interpreter as interp
    from kit.engine import runner
    from kit.engine.target import Target

    watchdog.install()  # from the main thread, as the plugin does
    target = Target.current()
    b = _behaviours()
    out: dict = {"runs": runs, "isolation_runs": isolation_runs}

    def interpret(behaviour, n):
        for _ in range(n):
            outcome = interp.Run(behaviour, target, {}).outcome()
            if outcome.status != interp.CONFORMS:
                raise RuntimeError(f"{behaviour.id}: {outcome.message}")

    for key, bid in (("step", "bench.pairs"), ("compute_step", "bench.compute")):
        steps = len(b[bid].steps)
        per_run, _ = best_ns(lambda n, bb=b[bid]: interpret(bb, n), runs, repeats)
        out[f"{key}_ns"] = per_run / steps

    def guard(n):
        for _ in range(n):
            with watchdog.bounded(5.0):
                pass

    out["watchdog_guard_ns"], _ = best_ns(guard, max(runs * 10, 10), repeats)

    # Hypothesis: a 25-example behaviour through check_behaviour, against 25 bare Runs.
    params = b["bench.params"]
    examples = 25

    def checked(n):
        for _ in range(n):
            verdict = runner.check_behaviour(params, target, profile="quick")
            if verdict.status != "conforms":
                raise RuntimeError(f"bench.params: {verdict.status} {verdict.message}")

    def bare(n):
        for i in range(n):
            for value in range(1, examples + 1):
                interp.Run(params, target, {"value": value + i}).outcome()

    n_checked = max(runs // 10, 2)
    per_behaviour, _ = best_ns(checked, n_checked, repeats)
    per_bare, _ = best_ns(bare, n_checked, repeats)
    out["hypothesis_example_ns"] = per_behaviour / examples
    out["bare_example_ns"] = per_bare / examples
    out["hypothesis_overhead_per_example_ns"] = (per_behaviour - per_bare) / examples

    # Isolation: the same one-example behaviour in a forked child, or in this process.
    one = b["bench.one"]

    def in_process(n):
        for _ in range(n):
            runner.check_with_leak_check(one, target)

    def isolated(n):
        for _ in range(n):
            verdict = runner.check_isolated(one, target)
            if verdict.status != "conforms":
                raise RuntimeError(f"bench.one isolated: {verdict.status} {verdict.message}")

    out["in_process_behaviour_ns"], _ = best_ns(in_process, isolation_runs, repeats)
    out["isolated_behaviour_ns"], _ = best_ns(isolated, isolation_runs, repeats)
    out["isolation_overhead_ns"] = out["isolated_behaviour_ns"] - out["in_process_behaviour_ns"]
    return out


# -- part 1: the whole conformance run -------------------------------------------------------


def _read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def bench_suite(jobs: str, profile: str, keyword: str | None, keep: Path | None,
                probe: bool = True, specs: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="kit-bench-suite-") as tmp:
        tmpdir = Path(tmp)
        report_dir = (keep / f"report-n{jobs}") if keep else tmpdir / "report"
        events_path = tmpdir / "probe.jsonl"
        cmd = [sys.executable, "-m", "kit", "run", "--report", str(report_dir), "-n", jobs,
               "--profile", profile]
        if keyword:
            cmd += ["-k", keyword]
        if specs:
            cmd += ["--specs", str(specs)]
        # An outer pytest (the smoke test, an xdist worker) must not leak into the run.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTEST_", "HYPOTHESIS_"))}
        if probe:
            env["KIT_BENCH_PROBE"] = str(events_path)
            env["PYTEST_PLUGINS"] = "kit_bench_probe"
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE),
                                                              env.get("PYTHONPATH")]))
        launched = time.time()
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              check=False)
        wall = time.monotonic() - start
        if keep:
            keep.mkdir(parents=True, exist_ok=True)
            (keep / f"output-n{jobs}.txt").write_text(proc.stdout + proc.stderr)
            if events_path.exists():
                shutil.copy(events_path, keep / f"probe-n{jobs}.jsonl")
        out = {"jobs": jobs, "profile": profile, "keyword": keyword, "wall_s": wall,
               "exit_code": proc.returncode, "command": " ".join(cmd[1:])}
        report_path = report_dir / "report.json"
        if not report_path.exists():
            out["error"] = "no report.json: " + (proc.stdout + proc.stderr)[-2000:]
            return out
        report = json.loads(report_path.read_text())
        verdicts = report["behaviours"]
        statuses: dict[str, int] = {}
        for v in verdicts:
            statuses[v["status"]] = statuses.get(v["status"], 0) + 1
        out.update(behaviours=len(verdicts), statuses=statuses,
                   checked=sum(n for s, n in statuses.items()
                               if s not in ("not applicable", "untestable")),
                   behaviours_per_s=len(verdicts) / wall)
        out.update(_probe_summary(_read_events(events_path), launched, wall, verdicts))
    return out


def _probe_summary(events: list[dict], launched: float, wall: float,
                   verdicts: list[dict]) -> dict:
    if not events:
        return {}
    done = [e for e in events if e["event"] == "behaviour"]
    isolated = [e for e in events if e["event"] == "isolated"]
    starts = [e for e in events if e["event"] == "start"]
    collected = [e for e in events if e["event"] == "collected"]
    finishes = [e for e in events if e["event"] == "finish"]
    warmups = [e for e in events if e["event"] == "warmup"]
    examples = sum(e["examples"] for e in done)
    model_examples = sum(e["model_examples"] for e in done)
    child = sum(e["seconds"] for e in done)
    outer = sum(e["seconds"] for e in isolated)
    first_start = min(e["t"] for e in starts) if starts else launched
    # Per process (the controller and every worker): start-up, collection, warm-up.
    collect_s = [c["t"] - s["t"] for s in starts for c in collected if c["pid"] == s["pid"]]
    ops: dict[str, list] = {}
    for e in done:
        for name, (n, seconds, main) in e.get("ops", {}).items():
            entry = ops.setdefault(name, [0, 0.0, 0.0])
            entry[0] += n
            entry[1] += seconds
            entry[2] += main
    run_s = sum(e.get("run_s", 0.0) for e in done)
    main_ops = sum(v[2] for v in ops.values())
    main_sleep = sum(e.get("sleep_fixed_main", 0.0) for e in done)
    guard_s = sum(e.get("guard_s", 0.0) for e in done)
    by_id_outer = {e["id"]: e["seconds"] for e in isolated}
    slowest = sorted(done, key=lambda e: by_id_outer.get(e["id"], e["seconds"]),
                     reverse=True)[:12]
    return {
        "examples": examples + model_examples,
        "step_examples": examples,
        "model_examples": model_examples,
        "examples_per_s": (examples + model_examples) / wall,
        "steps": sum(e["steps"] for e in done),
        "blocking_steps": sum(e["blocking_steps"] for e in done),
        "processes": len(starts),
        "startup_s": first_start - launched,
        "collection_s_per_process": collect_s,
        "warmup_s_per_process": [e["seconds"] for e in warmups],
        "behaviour_s_total": outer,
        "in_child_s_total": child,
        "isolation_s_total": outer - child,
        "run_s_total": run_s,
        "outside_run_s_total": child - run_s,
        "main_calls_s_total": main_ops,
        "main_sleep_s_total": main_sleep,
        "guard_s_total": guard_s,
        "interpreter_rest_s_total": run_s - main_ops - main_sleep - guard_s,
        "in_child_steps": sum(e.get("in_child_n", 0) for e in done),
        "in_child_steps_s": sum(e.get("in_child_s", 0.0) for e in done),
        "ops": {k: {"calls": v[0], "s": v[1], "main_s": v[2]}
                for k, v in sorted(ops.items(), key=lambda kv: -kv[1][2])},
        "sleep_fixed_s_total": sum(e["sleep_fixed"] for e in done),
        "sleep_fixed_count": sum(e["sleep_fixed_n"] for e in done),
        "sleep_poll_s_total": sum(e["sleep_poll"] for e in done),
        "after_session_s": (launched + wall) - max(e["t"] for e in finishes)
        if finishes else None,
        "slowest": [{"id": e["id"], "s": by_id_outer.get(e["id"], e["seconds"]),
                     "examples": e["examples"] + e["model_examples"],
                     "sleep_fixed_s": e["sleep_fixed"]} for e in slowest],
        "probe_behaviours": len(done),
        "report_behaviours": len(verdicts),
    }


# -- output -----------------------------------------------------------------------------------


def _us(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1000:.2f} µs"


def _budget(label: str, value: float, unit: str, budget: float) -> str:
    ratio = value / budget
    verdict = "OK" if ratio <= 1.0 else "OVER"
    return f"  {label:<46} {value:>8.2f} {unit:<2} budget {budget:>6.1f} {unit:<2} " \
           f"ratio {ratio:5.2f}  {verdict}"


def render(results: dict) -> str:
    lines = [f"kit benchmark - {results['host']}"]
    suite = results.get("suite") or {}
    for jobs, run in suite.items():
        lines.append(f"\nwhole conformance run, {run['profile']} profile, -n {jobs} "
                     f"({run['command']})")
        if "error" in run:
            lines.append(f"  FAILED: {run['error']}")
            continue
        lines.append(f"  {'wall time':<46} {run['wall_s']:8.1f} s   (exit code "
                     f"{run['exit_code']})")
        lines.append(f"  {'behaviours':<46} {run['behaviours']:8d}     "
                     + ", ".join(f"{k} {v}" for k, v in sorted(run['statuses'].items())))
        lines.append(f"  {'behaviours per second':<46} {run['behaviours_per_s']:8.2f}")
        if "examples" in run:
            lines.append(f"  {'Hypothesis examples (counted)':<46} {run['examples']:8d}     "
                         f"({run['step_examples']} step examples, {run['model_examples']} "
                         f"model programs)")
            lines.append(f"  {'examples per second':<46} {run['examples_per_s']:8.1f}")
            lines.append(f"  {'spec steps (blocking, under the watchdog)':<46} "
                         f"{run['steps']:8d}     ({run['blocking_steps']} blocking)")
            lines.append(f"  {'start-up until the plugins load':<46} {run['startup_s']:8.2f} s")
            coll = run["collection_s_per_process"]
            lines.append(f"  {'collection, per process':<46} "
                         f"{max(coll) if coll else 0:8.2f} s   ({len(coll)} processes)")
            warm = run["warmup_s_per_process"]
            lines.append(f"  {'warm-up, per process':<46} {max(warm) if warm else 0:8.2f} s")
            lines.append(f"  {'behaviours, summed over processes':<46} "
                         f"{run['behaviour_s_total']:8.1f} s")
            lines.append(f"  {'  of which fork/isolation':<46} "
                         f"{run['isolation_s_total']:8.1f} s")
            if "run_s_total" in run:
                lines.append(f"  {'  of which Hypothesis, model, verdict (no Run)':<46} "
                             f"{run['outside_run_s_total']:8.1f} s")
                lines.append(f"  {'  of which examples (Run.outcome)':<46} "
                             f"{run['run_s_total']:8.1f} s")
                lines.append(f"  {'    in calls (main thread)':<46} "
                             f"{run['main_calls_s_total']:8.1f} s")
                lines.append(f"  {'    in fixed sleeps (main thread)':<46} "
                             f"{run['main_sleep_s_total']:8.1f} s")
                lines.append(f"  {'    in the watchdog guard':<46} "
                             f"{run['guard_s_total']:8.1f} s")
                lines.append(f"  {'    interpreter, threads, in_child, rest':<46} "
                             f"{run['interpreter_rest_s_total']:8.1f} s   "
                             f"({run['in_child_steps']} in_child steps: "
                             f"{run['in_child_steps_s']:.1f} s)")
            lines.append(f"  {'fixed sleeps, all threads (sleep:, after:)':<46} "
                         f"{run['sleep_fixed_s_total']:8.1f} s   "
                         f"({run['sleep_fixed_count']} sleeps)")
            lines.append(f"  {'/proc polling sleeps (when_blocked)':<46} "
                         f"{run['sleep_poll_s_total']:8.1f} s")
            if run.get("ops"):
                lines.append("  operations by time in the main thread (calls, s main, s all):")
                for name, op in list(run["ops"].items())[:8]:
                    lines.append(f"    {op['calls']:6d} {op['main_s']:6.2f} {op['s']:6.2f}  "
                                 f"{name}")
            lines.append("  slowest behaviours (s, examples, fixed sleeps s):")
            for e in run["slowest"]:
                lines.append(f"    {e['s']:6.2f}  {e['examples']:4d}  "
                             f"{e['sleep_fixed_s']:5.2f}  {e['id']}")
    adapter = results.get("adapter")
    if adapter:
        lines.append(f"\nper call: eventfd write_u64+read_u64 pair, EFD_NONBLOCK, best of "
                     f"{adapter['repeats']} x {adapter['iterations']} pairs")
        lines.append(f"  {'kit.adapter (fds.write_u64 + fds.read_u64)':<46} "
                     f"{_us(adapter['adapter_pair_ns']):>11}  "
                     f"{_us(adapter['adapter_pair_ns'] / 2)} per call")
        lines.append(f"  {'raw ctypes, same argtypes, no adapter':<46} "
                     f"{_us(adapter['ctypes_pair_ns']):>11}")
        lines.append(f"  {'os.write + os.read':<46} {_us(adapter['os_pair_ns']):>11}")
        c_label = "C, cc -O2 write(2) + read(2)"
        if adapter.get("c_pair_ns"):
            lines.append(f"  {c_label:<46} {_us(adapter['c_pair_ns']):>11}")
        else:
            lines.append(f"  {c_label:<46} {'-':>11}  ({adapter.get('c_note')})")
        lines.append(f"  {'adapter / C':<46} "
                     + (f"{adapter['adapter_over_c']:8.2f} x" if adapter.get("adapter_over_c")
                        else "       -"))
    engine = results.get("engine")
    if engine:
        lines.append("\nengine")
        lines.append(f"  {'interpreter, per write/read step (Run)':<46} "
                     f"{_us(engine['step_ns']):>11}")
        lines.append(f"  {'interpreter, per compute step (no syscall)':<46} "
                     f"{_us(engine['compute_step_ns']):>11}")
        lines.append(f"  {'watchdog guard, per blocking call':<46} "
                     f"{_us(engine['watchdog_guard_ns']):>11}")
        lines.append(f"  {'one example through Hypothesis (3 steps)':<46} "
                     f"{_us(engine['hypothesis_example_ns']):>11}  "
                     f"bare Run: {_us(engine['bare_example_ns'])}")
        lines.append(f"  {'Hypothesis overhead, per example':<46} "
                     f"{_us(engine['hypothesis_overhead_per_example_ns']):>11}")
        lines.append(f"  {'one behaviour, in process (leak check)':<46} "
                     f"{_us(engine['in_process_behaviour_ns']):>11}")
        lines.append(f"  {'one behaviour, forked child (check_isolated)':<46} "
                     f"{_us(engine['isolated_behaviour_ns']):>11}")
        lines.append(f"  {'isolation overhead, per behaviour':<46} "
                     f"{_us(engine['isolation_overhead_ns']):>11}")
    lines.append("\nbudgets")
    parallel = suite.get("auto")
    if parallel and "wall_s" in parallel and "error" not in parallel:
        lines.append(_budget(f"suite, {parallel['profile']} profile, -n auto", parallel["wall_s"],
                             "s", BUDGET_SUITE_PARALLEL))
    serial = suite.get("0")
    if serial and "error" not in serial and parallel and "error" not in parallel:
        lines.append(f"  {'speed-up of -n auto over -n 0':<46} "
                     f"{serial['wall_s'] / parallel['wall_s']:8.2f} x")
    if adapter:
        lines.append(_budget("adapter per call / os.read+os.write", adapter["adapter_over_os"],
                             "x", BUDGET_ADAPTER_OVER_OS))
    return "\n".join(lines)


def host() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"Linux {platform.release()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"load {load:.2f}, Python {platform.python_version()}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="skip the whole-suite runs (parts 2 and 3 only: seconds)")
    ap.add_argument("--suite-only", action="store_true", help="only the whole-suite runs")
    ap.add_argument("--jobs", action="append", metavar="N",
                    help="-n values for the whole-suite runs (default: 0 and auto)")
    ap.add_argument("--profile", default="quick", choices=("quick", "default", "thorough"),
                    help="kit profile of the whole-suite runs (default: %(default)s)")
    ap.add_argument("-k", dest="keyword", help="only behaviours matching this pytest -k "
                                               "expression (the budget is for the whole suite)")
    ap.add_argument("--no-probe", action="store_true",
                    help="run the suite without the counting plugin (no example counts)")
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="keep the suite runs' reports and output in DIR")
    ap.add_argument("--iterations", type=int, default=50_000,
                    help="write/read pairs per timed run (default: %(default)s; C: 10x)")
    ap.add_argument("--repeats", type=int, default=7,
                    help="timed runs per figure, the best counts (default: %(default)s)")
    ap.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    ns = ap.parse_args(argv)

    results: dict = {"host": host(), "started": time.time()}
    if not ns.suite_only:
        results["adapter"] = bench_adapter(ns.iterations, ns.repeats)
        runs = max(ns.iterations // 1000, 3)
        # Engine figures are in the 10 µs - 10 ms range: three timed runs are enough.
        results["engine"] = bench_engine(runs, min(ns.repeats, 3),
                                         isolation_runs=max(runs // 5, 2))
    if not ns.quick:
        results["suite"] = {}
        for jobs in ns.jobs or ["0", "auto"]:
            print(f"running the suite with -n {jobs} ...", file=sys.stderr, flush=True)
            results["suite"][jobs] = bench_suite(jobs, ns.profile, ns.keyword, ns.keep,
                                                 probe=not ns.no_probe)
    results["finished"] = time.time()
    print(render(results))
    if ns.json:
        ns.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
