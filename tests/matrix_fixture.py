"""A matrix at full size for the merged report's tests: ten targets' report.json files,
derived from one real report (a conforming and a deviating verdict of a real run, with
their real traces), copied out to about 480 behaviours and given each target's share of
deviations, known deviations and timeouts, as a real ten-target matrix has them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from kit.report.summary import by_basis, by_family, conformance_ratio, status_counts

FAMILIES = ("epoll", "eventfd", "signalfd", "timerfd")
PER_FAMILY = 120

# name, kind, platform, (new deviations, known deviations, timeouts): listed in the order
# of targets/*.yaml (by file name), which is not the order the report must show them in.
TARGETS = (
    ("alpine-musl", "container", "container", (1, 0, 0)),
    ("debian-5.10", "qemu", "qemu", (0, 6, 0)),
    ("debian-6.1", "qemu", "qemu", (0, 2, 0)),
    ("debian-6.12", "qemu", "qemu", (0, 0, 0)),
    ("debian-arm64", "userland", "qemu-user", (0, 24, 1)),
    ("debian-glibc", "container", "container", (0, 0, 0)),
    ("debian-i386", "userland", "userland", (0, 3, 0)),
    ("debian-s390x", "userland", "qemu-user", (0, 31, 0)),
    ("gvisor", "gvisor", "gvisor", (2, 87, 3)),
    ("host", "host", "linux", (0, 0, 0)),
)
WORST = "gvisor"
GROUPS = {"Real kernels": ["debian-5.10", "debian-6.1", "debian-6.12", "host"],
          "Other implementations": ["gvisor", "debian-s390x", "debian-arm64"],
          "Userlands": ["alpine-musl", "debian-i386", "debian-glibc"]}


def behaviour_ids() -> list[str]:
    return [f"{family}.synthetic.case_{i:03d}" for family in FAMILIES
            for i in range(PER_FAMILY)]


def _verdicts(base: dict, new: int, known: int, timeouts: int, salt: int) -> list[dict]:
    """Every behaviour id, conforming but for the first NEW, KNOWN, TIMEOUTS of a
    target-specific rotation (so targets share some deviations and not others)."""
    records = {b["status"]: b for b in base["behaviours"]}
    conforming, deviating = records["conforms"], records["deviates"]
    ids = behaviour_ids()
    rotated = ids[salt * 37 % len(ids):] + ids[:salt * 37 % len(ids)]
    fate = {}
    for bid in rotated[:new]:
        fate[bid] = "new"
    for bid in rotated[new:new + known]:
        fate[bid] = "known"
    for bid in rotated[new + known:new + known + timeouts]:
        fate[bid] = "timeout"
    out = []
    for bid in ids:
        kind = fate.get(bid)
        record = copy.deepcopy(deviating if kind in ("new", "known") else conforming)
        record.update(id=bid, family=bid.split(".")[0],
                      title=f"{bid}: a documented behaviour of {bid.split('.')[0]}, "
                            "as long as the real titles are")
        if kind == "known":
            record["known_deviation"] = f"recorded for this target: {bid} answers otherwise"
        if kind == "timeout":
            record.update(status="timeout", message="read_u64 still blocked after 5.0s",
                          counterexample=None)
        out.append(record)
    return out


def ten_reports(base: dict) -> list[dict]:
    """Ten report.json documents in the targets directory's order."""
    reports = []
    for salt, (name, kind, platform, (new, known, timeouts)) in enumerate(TARGETS):
        report = copy.deepcopy(base)
        behaviours = _verdicts(base, new, known, timeouts, salt)
        report["target"].update(name=name, kind=kind, platform=platform,
                                how=f"synthetic {kind} target")
        report["behaviours"] = behaviours
        report["summary"] = {"statuses": status_counts(behaviours),
                             "families": by_family(behaviours), "basis": by_basis(behaviours),
                             "conformance": conformance_ratio(behaviours),
                             "behaviours": len(behaviours), "fixed": [],
                             "documentation_defects": []}
        report.pop("coverage", None)
        reports.append(report)
    return reports


def write_reports(base: dict, root: Path) -> list[Path]:
    """Each target's report.json in ROOT/NAME/, as kit matrix leaves them."""
    paths = []
    for report in ten_reports(base):
        directory = root / report["target"]["name"]
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "report.json").write_text(json.dumps(report))
        paths.append(directory)
    return paths
