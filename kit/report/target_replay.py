"""The replay command of each matrix target's own column: `kit replay --target NAME ...`.

A target's report.json carries the plain `kit replay ID --params ...`, which runs the example
on the machine where it is pasted: on the host, not inside gVisor, the i386 userland or the
booted kernel where the deviation was seen. Merged reports (`kit matrix`, `kit report
--merge`) add `target_replay` beside it for every behaviour that has a replay command, and
show that one in the target's column.
"""

from __future__ import annotations

from kit.verdict import replay_command


def add_target_replays(report: dict, targets_dir: str | None = None) -> dict:
    """`report` (changed in place, and returned) with `target_replay` on each behaviour
    that has a replay command, when the report names its matrix target; `targets_dir` is
    given where the target file is not in the default targets/."""
    name = (report.get("target") or {}).get("name")
    if not name:
        return report      # a plain `kit run`: its own replay command is the right one
    for b in report.get("behaviours", []):
        if b.get("replay"):
            b["target_replay"] = replay_command(b["id"], b.get("counterexample"),
                                                target=name, targets_dir=targets_dir)
    return report


def target_replays(report: dict) -> dict[str, str]:
    """behaviour id -> the command replaying it on the report's target (matrix.json)."""
    return {b["id"]: b["target_replay"] for b in report.get("behaviours", [])
            if b.get("target_replay")}
