"""The benchmark itself works: its per-call and engine parts run with tiny iteration counts
and produce every figure. Nothing here checks a timing: performance is what
`benchmarks/run.py` prints, never an assertion."""

from __future__ import annotations

import importlib.util
import json
import subprocess

import pytest
from helpers import REPO, run_python

RUN_PY = REPO / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("kit_benchmark_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_adapter_part_measures_every_figure(bench, no_leaks):
    out = bench.bench_adapter(iterations=200, repeats=2, c_iterations=200)
    for key in ("adapter_pair_ns", "os_pair_ns", "ctypes_pair_ns", "adapter_over_os"):
        assert out[key] > 0, key
    if out["c_pair_ns"] is None:  # no compiler here: the benchmark says why
        assert out["c_note"]
    else:
        assert out["c_pair_ns"] > 0 and out["adapter_over_c"] > 0


def test_the_c_program_builds_and_reports_ns_per_pair(bench, cc, tmp_path):
    exe = bench.build_c(tmp_path)
    assert exe is not None
    ran = subprocess.run([str(exe), "100"], capture_output=True, text=True, timeout=30,
                         check=True)
    assert float(ran.stdout) > 0


def test_the_quick_benchmark_prints_its_table_and_json(tmp_path):
    out = tmp_path / "figures.json"
    ran = run_python([str(RUN_PY), "--quick", "--iterations", "300", "--repeats", "1",
                      "--json", str(out)], cwd=REPO)
    assert ran.ret == 0, ran.output
    figures = json.loads(out.read_text())
    assert set(figures) >= {"host", "adapter", "engine"}
    assert "suite" not in figures  # --quick skips the whole-suite runs
    for key in ("step_ns", "compute_step_ns", "watchdog_guard_ns", "hypothesis_example_ns",
                "in_process_behaviour_ns", "isolated_behaviour_ns"):
        assert figures["engine"][key] > 0, key
    assert "adapter per call / os.read+os.write" in ran.stdout
    assert "isolation overhead, per behaviour" in ran.stdout


def test_the_suite_summary_reads_the_probe_events(bench):
    """The whole-suite part's arithmetic, on a hand-written event log (no suite run)."""
    base = {"examples": 3, "model_examples": 0, "steps": 9, "blocking_steps": 4,
            "sleep_fixed": 0.2, "sleep_fixed_n": 1, "sleep_poll": 0.01, "sleep_poll_n": 3,
            "sleep_fixed_main": 0.0, "run_s": 0.5, "guard_s": 0.01, "in_child_n": 0,
            "in_child_s": 0.0, "ops": {"read_u64": [4, 0.3, 0.3]}}
    events = [
        {"event": "start", "pid": 1, "t": 100.5},
        {"event": "collected", "pid": 1, "t": 101.0, "items": 2},
        {"event": "warmup", "pid": 1, "t": 101.2, "seconds": 0.2},
        {"event": "behaviour", "pid": 2, "t": 102.0, "id": "a", "seconds": 0.6, **base},
        {"event": "isolated", "pid": 1, "t": 102.0, "id": "a", "seconds": 0.7},
        {"event": "behaviour", "pid": 3, "t": 103.0, "id": "b", "seconds": 0.6, **base},
        {"event": "isolated", "pid": 1, "t": 103.0, "id": "b", "seconds": 0.8},
        {"event": "finish", "pid": 1, "t": 103.5, "exitstatus": 0},
    ]
    summary = bench._probe_summary(events, launched=100.0, wall=4.0, verdicts=[{}, {}])
    assert summary["examples"] == 6 and summary["steps"] == 18
    assert summary["startup_s"] == pytest.approx(0.5)
    assert summary["isolation_s_total"] == pytest.approx(0.3)
    assert summary["outside_run_s_total"] == pytest.approx(0.2)
    assert summary["ops"]["read_u64"]["calls"] == 8
    assert [s["id"] for s in summary["slowest"]] == ["b", "a"]
    assert "slowest behaviours" in bench.render({"host": "h", "suite": {"0": {
        "profile": "quick", "command": "kit run", "wall_s": 4.0, "exit_code": 0,
        "behaviours": 2, "statuses": {"conforms": 2}, "behaviours_per_s": 0.5, **summary}}})


PROBED = """
behaviours:
  - id: probe.params
    title: Drawn parameters, counted as examples
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "returns 8 bytes containing that value"}
    params:
      value: {integers: {min: 1, max: 1000}}
    max_examples: 3
    steps:
      - eventfd: {initval: 0, flags: EFD_NONBLOCK}
        as: efd
      - write_u64: {fd: $efd, value: $value}
        expect: {returns: 8}
      - read_u64: {fd: $efd}
        expect: {returns: 8, value: $value}
  - id: probe.child
    title: A step in a forked child still works under the probe
    cite: {page: eventfd(2), section: DESCRIPTION, quote: "returns 8 bytes containing that value"}
    steps:
      - eventfd: {initval: 0, flags: EFD_NONBLOCK}
        as: efd
      - in_child:
          steps:
            - write_u64: {fd: $efd, value: 2}
              expect: {returns: 8}
      - read_u64: {fd: $efd}
        expect: {returns: 8, value: 2}
"""


def test_the_probe_counts_without_changing_a_verdict(bench, tmp_path):
    """The counting plugin wraps kit functions: every verdict must stay what it was."""
    specs = tmp_path / "specs"
    (specs / "probe").mkdir(parents=True)
    (specs / "probe" / "t.yaml").write_text(PROBED)
    run = bench.bench_suite("0", "quick", None, None, specs=specs)
    assert run.get("statuses") == {"conforms": 2}, run
    assert run["examples"] >= 4 and run["in_child_steps"] == 1
    assert run["ops"]["write_u64"]["calls"] >= 3
