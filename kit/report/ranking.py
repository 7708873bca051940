"""Which targets deviate most, and which group each belongs to: one order for every writer
of a merged report (report.html's cards and columns, matrix.md's tables), so a page of ten
targets opens on the worst ones.

Groups, in this order:
    kernel          real kernels: the running one, or a Debian kernel booted under QEMU
    implementation  other implementations of the syscall interface (gVisor, qemu-user)
    userland        the running kernel through another ABI or libc (i386, containers)

The group comes from the target's `kind` (written into the merged data by kit matrix) and
its `platform` (KIT_PLATFORM, also what known deviations name). A report merged by hand
from plain `kit run`s has neither and counts as a real kernel.
"""

from __future__ import annotations

GROUPS = (
    ("kernel", "Real kernels", "Linux itself: the running kernel, or a kernel booted in a VM"),
    ("implementation", "Other implementations",
     "the Linux syscall interface implemented by something else (gVisor, qemu-user)"),
    ("userland", "Userlands", "the running kernel through another ABI or libc"),
)
GROUP_LABELS = {key: label for key, label, _ in GROUPS}

# Platforms that are Linux itself: the host's, and the ones kit matrix derives from a
# target's kind when its file names none. Any other platform names another implementation.
_LINUX_PLATFORMS = {"", "linux", "host", "qemu", "userland", "container"}
_USERLAND_KINDS = {"userland", "container"}


def target_group(target: dict) -> str:
    """The group key of a report's `target` (or a matrix.json entry's `target`/metadata)."""
    platform = str(target.get("platform") or "").lower()
    kind = str(target.get("kind") or "").lower()
    if kind == "gvisor" or platform not in _LINUX_PLATFORMS:
        return "implementation"
    if kind in _USERLAND_KINDS or platform in _USERLAND_KINDS:
        return "userland"
    return "kernel"


def deviation_counts(behaviours: list[dict]) -> dict[str, int]:
    """How much a target deviates, in the order that ranks it: deviations nobody recorded,
    then known deviations (deviating or timing out as recorded), then timeouts, then kit
    errors."""
    counts = {"new": 0, "known": 0, "timeouts": 0, "errors": 0}
    for b in behaviours:
        status, known = b.get("status"), bool(b.get("known_deviation"))
        if known and status in ("deviates", "timeout"):
            counts["known"] += 1
        elif status == "deviates":
            counts["new"] += 1
        elif status == "timeout":
            counts["timeouts"] += 1
        elif status == "error":
            counts["errors"] += 1
    return counts


def severity_key(counts: dict | None) -> tuple:
    """Sorts the worst first; a target without counts (it did not run) last."""
    if counts is None:
        return (1,)
    return (0, -counts.get("new", 0), -counts.get("known", 0), -counts.get("timeouts", 0),
            -counts.get("errors", 0))


def rank(items: list, group_of, counts_of) -> list:
    """ITEMS grouped in GROUPS' order, worst first within a group; ties keep their order
    (the targets directory's, or the order given to `kit report --merge`)."""
    order = {key: i for i, (key, _, _) in enumerate(GROUPS)}
    return sorted(items, key=lambda item: (order.get(group_of(item), len(order)),
                                           severity_key(counts_of(item))))


def rank_reports(reports: list[dict]) -> list[dict]:
    return rank(reports, lambda r: target_group(r.get("target") or {}),
                lambda r: deviation_counts(r.get("behaviours") or []))
