"""A behaviour's verdict as a plain record: what every report writer consumes."""

from __future__ import annotations

import shlex
import time
from dataclasses import asdict, dataclass, field

from kit.spec.model import Behaviour

STATUSES = ("conforms", "deviates", "timeout", "error", "not applicable", "untestable")


def replay_command(behaviour_id: str, params: dict | None, *, target: str | None = None,
                   targets_dir: str | None = None, profile: str = "quick") -> str:
    """`kit replay` of one example; with `target`, the command that runs it on that matrix
    target (from the checkout, as `kit matrix` is run: `.venv/bin/kit`), since a plain
    replay runs it on whatever machine reads the report. A profile other than quick is
    named: it binds $quiet and $loop_share, so the same parameters mean another example."""
    cmd = ["kit", "replay", behaviour_id]
    if target:
        where = ["--targets", targets_dir] if targets_dir else []
        cmd = [".venv/bin/kit", "replay", "--target", target, *where, behaviour_id]
    if profile != "quick":
        cmd += ["--profile", profile]
    if params:
        import json
        cmd += ["--params", json.dumps(params, sort_keys=True)]
    return shlex.join(cmd)


@dataclass
class Verdict:
    id: str
    title: str
    family: str
    file: str
    line: int
    cite: dict
    status: str
    message: str = ""
    counterexample: dict | None = None
    trace: list[dict] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)
    known_deviation: str | None = None
    # a failure that is not the one recorded as known for this target: both, in words
    new_deviation: str | None = None
    # conforms although a deviation is recorded for this target: what is no longer seen
    fixed: str | None = None
    # every kernel change the behaviour is gated on: whether this kernel carries it, and
    # which rule it was judged by (kit.engine.gates)
    gates: list[str] = field(default_factory=list)
    # conforms, and what it checks is the kernel's side of a documentation defect: the
    # page's claim, what the kernel does, the evidence
    documentation_defect: dict | None = None
    duration: float = 0.0
    seed: int | None = None
    nodeid: str = ""
    replay: str = ""
    source: str = ""
    finished: float = field(default_factory=time.time)

    @classmethod
    def of(cls, behaviour: Behaviour, status: str, **kw) -> "Verdict":
        return cls(id=behaviour.id, title=behaviour.title, family=behaviour.family,
                   file=behaviour.file, line=behaviour.line, cite=asdict(behaviour.cite),
                   status=status, source=behaviour.source, **kw)

    def as_dict(self) -> dict:
        return asdict(self)
