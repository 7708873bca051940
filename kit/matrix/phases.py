"""Where a VM target's time went: the phases of one run, and their one-line summary.

A qemu run is timed on both sides. The host knows how long preparing took (kernel, initramfs,
guest image) and when qemu started and exited; the guest prints marks with its uptime on the
console (/init: `up`, `kit start`, `kit exit`; guest_phases.py inside `kit run`: `imported`,
`collected`, `tested`). Durations inside the guest come from its uptimes, so a busy host
that reads the console late does not move time from one phase into the next.
"""

from __future__ import annotations

# (phase, the mark it starts at, the mark it ends at), in order; guest marks only
GUEST_PHASES = [
    ("setup", "up", "kit start"),             # modules, mounts, the run script
    ("python", "kit start", "imported"),      # interpreter, pytest, Hypothesis, the kit
    ("collect", "imported", "collected"),     # specs loaded (and xdist's workers started)
    ("suite", "collected", "tested"),         # the behaviours themselves
    ("report", "tested", "kit exit"),         # reports written, the interpreter's exit
]
ORDER = ["prepare", "boot", *(p for p, _, _ in GUEST_PHASES), "shutdown"]
SHOWN = ["boot", "python", "collect", "suite"]       # what the summary line always names


def split(uptimes: dict[str, float], *, prepare: float | None = None,
          boot: float | None = None, shutdown: float | None = None) -> dict[str, float]:
    """{phase: seconds} from the guest's marks ({mark: uptime}) and the host's own timings;
    a phase whose marks are missing (a run that stopped early) is left out."""
    phases: dict[str, float] = {}
    if prepare is not None:
        phases["prepare"] = prepare
    if boot is not None:
        phases["boot"] = boot
    for name, begin, end in GUEST_PHASES:
        if begin in uptimes and end in uptimes and uptimes[end] >= uptimes[begin]:
            phases[name] = uptimes[end] - uptimes[begin]
    if shutdown is not None:
        phases["shutdown"] = shutdown
    return {k: round(v, 1) for k, v in phases.items()}


def seconds_text(seconds: float) -> str:
    """42s, 3m10s, 1h02m."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def summary(phases: dict[str, float], minimum: float = 5.0) -> str:
    """`boot 25s, python 40s, suite 2m05s`: the main phases always, others when they took
    at least `minimum` seconds (a cold kernel download, a slow report)."""
    return ", ".join(f"{name} {seconds_text(phases[name])}" for name in ORDER
                     if name in phases and (name in SHOWN or phases[name] >= minimum))
