"""`kit bench`: every mechanism x via x mode combination ends up in bench.json, with
positive figures or an error string. No timing assertions: the machine may be loaded."""

from __future__ import annotations

import json
import subprocess
import sys

from kit.bench.run import FIGURES, combinations, run_one


def test_bench_writes_every_combination(tmp_path):
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "kit", "bench", "--report", str(out),
                           "--rounds", "200"], capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode in (0, 1), done.stderr
    bench = json.loads((out / "bench.json").read_text())
    assert bench["target"]["release"]
    assert bench["rounds"] == 200
    rows = {(r["mechanism"], r["via"], r["mode"]): r for r in bench["results"]}
    assert set(rows) == set(combinations()) and len(bench["results"]) == 16
    for combo, row in rows.items():
        if row["error"] is not None:
            assert isinstance(row["error"], str) and row["error"], combo
            continue
        for key in FIGURES:
            assert row[key] > 0, (combo, key, row)
        assert row["rounds"] == 200
        assert row["rtt_min_ns"] <= row["rtt_median_ns"] <= row["rtt_p99_ns"], combo
    for mechanism, via, mode in combinations():  # the table names every combination
        assert any(line.split()[:3] == [mechanism, via, mode]
                   for line in done.stdout.splitlines()), (mechanism, via, mode)


def test_bench_json_output_matches_file(tmp_path):
    out = tmp_path / "r"
    done = subprocess.run([sys.executable, "-m", "kit", "bench", "--report", str(out),
                           "--rounds", "20", "--json"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert json.loads(done.stdout) == json.loads((out / "bench.json").read_text())


def test_a_failing_or_hanging_helper_is_an_error_not_a_crash(tmp_path):
    hang = tmp_path / "hang"
    hang.write_text("#!/bin/sh\nexec sleep 30\n")
    hang.chmod(0o755)
    row = run_one(hang, "eventfd", "direct", "thread", rounds=10, timeout=1)
    assert row["error"].startswith("timed out") and row["rtt_median_ns"] is None
    broken = tmp_path / "broken"
    broken.write_text('#!/bin/sh\necho \'{"error": "eventfd: Function not implemented"}\'\n'
                      "exit 1\n")
    broken.chmod(0o755)
    row = run_one(broken, "pipe", "epoll", "process", rounds=10, timeout=5)
    assert row["error"] == "eventfd: Function not implemented"
    assert (row["mechanism"], row["via"], row["mode"]) == ("pipe", "epoll", "process")


def test_no_compiler_skips_with_a_reason(tmp_path, monkeypatch):
    import kit.bench.run as bench

    import kit.native.build

    monkeypatch.setattr(kit.native.build.shutil, "which", lambda name: None)
    rows = bench.run_all(rounds=10)
    assert len(rows) == 16
    assert all(r["error"].startswith("skipped: no C compiler") for r in rows)


def test_run_with_bench_embeds_the_figures_in_the_report(tmp_path):
    """`kit run --bench` (what `kit matrix --bench` asks of every target) puts the
    benchmark into report.json, so a target that returns one file returns both."""
    out = tmp_path / "report"
    done = subprocess.run([sys.executable, "-m", "kit", "run", "--bench", "--report", str(out),
                           "-n", "0", "-k", "eventfd and read and short_buffer"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert len(report["bench"]["results"]) == len(list(combinations()))
    assert "Notification benchmark" in (out / "report.html").read_text()
