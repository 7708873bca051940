"""Same seed, same verdicts: a run replayed with the seed recorded in its report finds
the same counterexamples, and the replay command from the report reproduces each one."""

from __future__ import annotations

import json

from helpers import behaviour, run_kit, run_plugin, spec_text, write_spec

SPECS = spec_text(
    behaviour("x.seed.boundary", """
        params:
          initval: {integers: {min: 0, max: 0xffffffff}}
          extra: {integers: {min: 0, max: 1000}}
        steps:
          - eventfd: {initval: $initval, flags: EFD_NONBLOCK}
            as: efd
          - read_u64: {fd: $efd}
            expect: {value: {add: [$initval, $extra]}}
    """),
    behaviour("x.seed.flags", """
        params:
          flags: {flag_sets: [EFD_NONBLOCK, EFD_SEMAPHORE, EFD_CLOEXEC]}
        steps:
          - eventfd: {initval: 0, flags: $flags}
            as: efd
          - fcntl: {fd: $efd, cmd: F_GETFD}
            expect: {value: 0}
    """),
)


def _verdicts(ran) -> dict:
    return {bid: (v["status"], v["counterexample"]) for bid, v in ran.verdicts().items()}


def test_a_run_replayed_with_its_recorded_seed_gives_the_same_verdicts(tmp_path):
    write_spec(tmp_path, SPECS)
    first = run_plugin(tmp_path, "--kit-seed", "1234")
    seed = first.report["run"]["seed"]
    assert seed == 1234
    second = run_plugin(tmp_path, "--kit-seed", str(seed), "-n", "2")
    assert _verdicts(first) == _verdicts(second)
    assert {s for s, _ in _verdicts(first).values()} == {"deviates"}


def test_each_recorded_replay_command_reproduces_its_deviation(tmp_path):
    write_spec(tmp_path, SPECS)
    ran = run_plugin(tmp_path)
    for bid, verdict in ran.verdicts().items():
        replay = run_kit(tmp_path, "replay", bid, "--specs", str(tmp_path / "specs"),
                         "--params", json.dumps(verdict["counterexample"]))
        assert replay.ret == 1, replay.output
        assert verdict["message"].split(": ", 1)[-1] in replay.output
