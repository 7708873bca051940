"""The native race executor (race_loop, kit/native/race.c), seen as a user sees it.

- a lost wake-up makes the spec deviate with a message naming the round and the waiter,
  the same round on every run (tests/planted/dropped_wakeup.c, one wake-up in 10 lost);
- without a C compiler the behaviours are not applicable, with the reason;
- an executor that hangs is killed at its bound and the behaviour is a timeout
  (tests/planted/executor_hangs.c);
- a scenario the executor does not have is refused when the spec loads;
- the build is cached by the source's hash, shared with `kit bench`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, _env, behaviour, line_of, load, run_python, spec_text, write_spec

from kit.native import build, race

PLANTED = Path(__file__).resolve().parent / "planted"
SPECS = REPO / "specs" / "epoll" / "races_native.yaml"
PING_PONG = "epoll.races_native.ping_pong_loses_no_wake_up"


def _shim(cc: str, name: str, out: Path) -> Path:
    library = out / f"{name}.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-o", str(library),
                    str(PLANTED / f"{name}.c"), "-ldl"], check=True, timeout=120)
    return library


def _kit_run(out: Path, specs: Path, select: str, **env) -> object:
    report = out / "report"
    args = ["-m", "kit", "run", "-n", "0", "--seed", "1", "--report", str(report),
            "--specs", str(specs), "-k", select]
    return run_python(args, cwd=out, report_dir=report, env={**_env(), **env})


def _race_spec(step: str) -> str:
    return spec_text(behaviour("x.race", f"steps:\n  - {step}\n    within: 30\n"
                                         f"    expect: {{returns: 0, fields: {{lost: 0}}}}\n"))


# Under dropped_wakeup (one wake-up in 10 lost): the loss each edge-triggered scenario
# reports. Level-triggered waits find a dropped event again, so those conform.
LOST_UNDER_SHIM = {
    PING_PONG: "round 10 of 2000: the partner got no event within 2000 ms",
    "epoll.races_native.mod_rearm_wakes_waiter": "the waiter got no event within",
    "epoll.races_native.all_written_all_woken": "got no event within 2000 ms",
    "epoll.races_native.timeout_race_loses_no_event": "the unbounded waiter got no event",
}


def test_a_lost_wake_up_deviates_naming_its_round_and_waiter(cc, tmp_path):
    """One wake-up in 10 lost (the 10th wait on an instance that finds an event throws it
    away): every edge-triggered loop deviates, its message naming the round and the waiter;
    the ping-pong at round 10, the partner, on every run (its replay loses it again)."""
    library = _shim(cc, "dropped_wakeup", tmp_path)
    ran = _kit_run(tmp_path, SPECS, "races_native", LD_PRELOAD=str(library),
                   PLANTED_DROP_EVERY="10")
    assert ran.ret == 1, ran.output
    verdicts = ran.verdicts()
    for bid, loss in LOST_UNDER_SHIM.items():
        assert verdicts[bid]["status"] == "deviates", verdicts[bid]
        message = verdicts[bid]["message"]
        assert "race_loop(" in message and "expected field lost 0, got 'round " in message
        assert loss in message, message
        assert f"{bid}: line " in ran.stdout   # the summary names it
    assert verdicts["epoll.races_native.concurrent_zero_timeout_waits_see_ready_item"][
        "status"] == "conforms"
    verdict = verdicts[PING_PONG]
    assert verdict["counterexample"] == {"et": True}
    step = [s for s in verdict["trace"] if s["call"].startswith("race_loop(")][-1]
    value = step["result"]["value"]
    assert (value["lost_at"], value["waiter"], value["rounds"]) == (10, "partner", 9)
    # the replay command of the report loses the same round again
    again = run_python(["-m", "kit", "replay", PING_PONG, "--params", '{"et": true}'],
                       cwd=tmp_path, env={**_env(), "LD_PRELOAD": str(library),
                                          "PLANTED_DROP_EVERY": "10"})
    assert again.ret == 1, again.output
    assert LOST_UNDER_SHIM[PING_PONG] in again.output


def test_without_a_compiler_the_native_races_are_not_applicable(tmp_path):
    """No cc on PATH (and an empty cache): every race_loop behaviour is not applicable, with
    the reason, and the run exits 0; nothing is reported as a deviation or an error."""
    empty = tmp_path / "bin"
    empty.mkdir()
    ran = _kit_run(tmp_path, SPECS, "races_native", PATH=str(empty),
                   XDG_CACHE_HOME=str(tmp_path / "cache"))
    assert ran.ret == 0, ran.output
    verdicts = ran.verdicts()
    assert len(verdicts) == 5
    for verdict in verdicts.values():
        assert verdict["status"] == "not applicable", verdict
        assert verdict["message"] == race.NO_COMPILER


def test_a_hung_executor_is_a_timeout_and_leaves_nothing_behind(cc, tmp_path):
    """Every wait of the executor hangs: it is killed at its own bound (its time cap, three
    waits and a grace) and the behaviour is a timeout naming the executor, never a lost
    wake-up; no executor process outlives the run."""
    library = _shim(cc, "executor_hangs", tmp_path)
    text = _race_spec("race_loop: {scenario: ping_pong, rounds: 100, seconds: 1, "
                      "share: $loop_share, wait_ms: 100}")
    specs = write_spec(tmp_path, text)
    ran = _kit_run(tmp_path, specs, "x.race", LD_PRELOAD=str(library))
    assert ran.ret == 1, ran.output
    verdict = ran.verdicts()["x.race"]
    assert verdict["status"] == "timeout", verdict
    assert "native race executor (ping_pong) did not finish within" in verdict["message"]
    assert verdict["duration"] < 20, verdict
    assert _executors_preloaded_with(library) == []


def _executors_preloaded_with(library: Path) -> list[int]:
    """Pids of race executors still running with `library` preloaded (this test's only:
    another test may be running its own executor meanwhile)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().startswith("race-") \
                    and str(library).encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile
    return found


def test_an_unknown_scenario_is_refused_when_the_spec_loads():
    text = _race_spec("race_loop: {scenario: fork_bomb, rounds: 10, seconds: 1, "
                      "share: $loop_share}")
    result = load(text)
    [error] = result.errors
    assert (error.file, error.behaviour, error.field) == \
        ("specs/x/t.yaml", "x.race", "steps[0].race_loop.scenario")
    assert error.line == line_of(text, "race_loop")
    assert "refused: unknown scenario 'fork_bomb'" in error.message


def test_too_many_waiters_are_refused_when_the_spec_loads():
    text = _race_spec("race_loop: {scenario: all_woken, rounds: 10, seconds: 1, "
                      "share: $loop_share, waiters: 1000}")
    [error] = load(text).errors
    assert error.field == "steps[0].race_loop.waiters"
    assert "1 to 64 waiters" in error.message


def test_loop_share_is_the_profiles_own_name():
    text = spec_text(behaviour("x.race", "params:\n  loop_share: {just: 1}\n"
                                         "steps:\n  - eventfd: {}\n"))
    [error] = load(text).errors
    assert error.field == "params.loop_share"


@pytest.mark.parametrize("scenario,waiters", [("ping_pong", 1), ("mod_rearm", 1),
                                              ("all_woken", 4), ("timeout_race", 1),
                                              ("zero_timeout", 4)])
def test_every_scenario_runs_its_rounds_on_this_kernel(scenario, waiters):
    record = race.run(scenario, race.plan(200, 5, 0.1), waiters, True, 2000)
    assert record["lost"] == 0, record
    assert record["planned"] == 20 and record["rounds"] == 20, record


def test_rounds_and_time_scale_with_the_profile_like_repeat():
    assert race.plan(100000, 20, 0.02) == race.Plan(2000, 0.4)
    assert race.plan(100000, 20, 1.0) == race.Plan(100000, 20.0)
    assert race.plan(10, 1, 0.02) == race.Plan(1, 0.1)


def test_the_build_is_cached_by_the_sources_hash(tmp_path):
    source = tmp_path / "hello.c"
    source.write_text('#include <stdio.h>\nint main(void) { puts("one"); return 0; }\n')
    first = build.build(source, "hello", cache=tmp_path / "cache")
    assert build.build(source, "hello", cache=tmp_path / "cache") == first
    source.write_text('#include <stdio.h>\nint main(void) { puts("two"); return 0; }\n')
    second = build.build(source, "hello", cache=tmp_path / "cache")
    assert second != first
    assert subprocess.run([second], capture_output=True, text=True,
                          check=True).stdout == "two\n"
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".")]


def test_a_compiler_error_is_a_build_error_naming_the_file(tmp_path):
    source = tmp_path / "broken.c"
    source.write_text("int main(void) { return }\n")
    with pytest.raises(build.BuildError, match="cc failed on broken.c"):
        build.build(source, "broken", cache=tmp_path / "cache")


def test_the_executor_reports_a_failed_call_as_an_error_record():
    """A bad argument reaches no kernel call: the executor refuses it (exit 2) and the
    record says so, not a lost wake-up."""
    exe = race.executor()
    done = subprocess.run([str(exe), "ping_pong", "0", "1", "1", "0", "10", "5"],
                          capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 2 and "out of range" in done.stderr
    assert json.loads(subprocess.run([str(exe), "mod_rearm", "3", "1", "1", "1", "1000", "5"],
                                     capture_output=True, text=True, timeout=10,
                                     check=True).stdout)["rounds"] == 3


def test_an_executor_that_cannot_run_or_dies_is_the_kits_failure_not_a_deviation(
        monkeypatch, tmp_path):
    """An exec that fails, or an executor killed before it wrote its record, is the kit's
    (or the machine's) failure: an error verdict, never the target's answer."""
    broken = tmp_path / "race"
    broken.write_text("#!/bin/sh\nkill -SEGV $$\n")
    broken.chmod(0o755)
    monkeypatch.setattr(race, "executor", lambda: broken)
    with pytest.raises(race.ExecutorFailed, match="killed by signal 11"):
        race.run("ping_pong", race.plan(20, 1, 1.0), 1, False, 100)
    monkeypatch.setattr(race, "executor", lambda: tmp_path / "missing")
    with pytest.raises(race.ExecutorFailed, match="cannot run the native race executor"):
        race.run("ping_pong", race.plan(20, 1, 1.0), 1, False, 100)
