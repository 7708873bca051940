"""Version gates in words: for each kernel change a behaviour depends on, whether this
kernel carries it and so which rule it was judged by.

Reports and `kit list` show these lines for every behaviour with a change gate (`since:` /
`before:` in `applies`, a `differs:` variant or a known deviation), whichever way it went:
a behaviour that conforms under the documented rule says why it was held to it, one judged
by an older kernel's rule says since when the rule changed.
"""

from __future__ import annotations

from kit.engine.target import Target
from kit.spec.changes import describe
from kit.spec.model import Behaviour


def condition(gate) -> str:
    """The kernels a gate (anything with kernel / since / before) selects, in words."""
    parts = []
    if gate.kernel:
        parts.append(f"kernel {gate.kernel}")
    if gate.since:
        parts.append(f"kernels with {describe(gate.since)}")
    if gate.before:
        parts.append(f"kernels without {describe(gate.before)}")
    return " and ".join(parts)


def _has(target: Target, change) -> str:
    verb = "carries" if target.carries(change) else "lacks"
    return f"kernel {target.kernel} ({target.patch_level.source}) {verb} {describe(change)}"


def explain(behaviour: Behaviour, target: Target) -> list[str]:
    """One line per change gate of the behaviour: what this kernel has and what follows."""
    out = []
    applies = behaviour.applies
    for change, wanted in ((applies.since, True), (applies.before, False)):
        if change:
            ok = target.carries(change) == wanted
            out.append(f"applies: {_has(target, change)}: "
                       + ("the behaviour applies" if ok else "not applicable"))
    for step in _all_steps(behaviour.steps):
        for variant in step.differs:
            for change in filter(None, (variant.since, variant.before)):
                # the change is named once, before the rule
                rule = (f"judged by the variant for these kernels ({variant.reason})"
                        if target.gate_holds(variant) else
                        "judged by the documented expectation, not the variant")
                out.append(f"line {step.line}: {_has(target, change)}: {rule}")
    for dev in behaviour.known_deviations:
        if dev.platform and dev.platform != target.platform:
            continue
        for change in filter(None, (dev.since, dev.before)):
            what = f"step {dev.step}" if dev.step else f"operation {dev.operation}"
            rule = ("the failure recorded at " + what + " is excused as a known deviation on "
                    "this kernel"
                    if target.gate_holds(dev) else
                    "judged by the documented rule: the known deviation at " + what +
                    " does not apply")
            out.append(f"known deviation (line {dev.line}): {_has(target, change)}: {rule}")
    return out


def _all_steps(steps):
    for step in steps:
        yield step
        yield from _all_steps(step.substeps)
