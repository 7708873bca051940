"""What changed between two report.json files: two kernels, or two runs of one."""

from __future__ import annotations

from kit.report.html import target_name


def verdict_label(b: dict) -> str:
    """The status, and whether it is a known deviation or a fixed one: a known deviation
    turning into a new one is a change even though both deviate."""
    return b["status"] + (" (known)" if b.get("known_deviation") else "") + (
        " (fixed)" if b.get("fixed") else "") + (
        " (documentation defect)" if b.get("documentation_defect") else "")


def diff_reports(old: dict, new: dict) -> dict:
    before = {b["id"]: b for b in old["behaviours"]}
    after = {b["id"]: b for b in new["behaviours"]}
    changed = [{"id": bid, "before": verdict_label(before[bid]),
                "after": verdict_label(after[bid]),
                "title": after[bid].get("title", ""),
                "message": after[bid].get("message", "") or after[bid].get("fixed") or ""}
               for bid in sorted(before.keys() & after.keys())
               if verdict_label(before[bid]) != verdict_label(after[bid])]
    return {
        "old": target_name(old), "new": target_name(new),
        "changed": changed,
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
    }


def render_diff(diff: dict) -> str:
    lines = [f"{diff['old']}  ->  {diff['new']}"]
    if not (diff["changed"] or diff["added"] or diff["removed"]):
        return lines[0] + "\nno differences in verdicts"
    for c in diff["changed"]:
        lines.append(f"  {c['id']}: {c['before']} -> {c['after']}"
                     + (f"  ({c['message'][:120]})" if c["message"] else ""))
    lines += [f"  + {bid} (only in the new report)" for bid in diff["added"]]
    lines += [f"  - {bid} (only in the old report)" for bid in diff["removed"]]
    return "\n".join(lines)


def differences(reports: list[dict]) -> list[dict]:
    """Behaviours whose verdict is not the same on every target, with each target's
    explanation (the deviation message, the known-deviation or version-gate reason)."""
    names = [target_name(r) for r in reports]
    table: dict[str, dict[str, dict]] = {}
    for name, report in zip(names, reports):
        for b in report["behaviours"]:
            table.setdefault(b["id"], {})[name] = b
    out = []
    for bid in sorted(table):
        cells = table[bid]
        statuses = {name: cells[name]["status"] if name in cells else "missing"
                    for name in names}
        if len(set(statuses.values())) < 2:
            continue
        why = {}
        for name, b in cells.items():
            reason = b.get("known_deviation") or b.get("message") or "; ".join(
                b.get("variants", []))
            if b.get("gates") and not b.get("known_deviation"):
                # which kernel change decided the rule this target was judged by
                reason = "; ".join(filter(None, [reason, *b["gates"]]))
            if reason:
                why[name] = (("known deviation: " if b.get("known_deviation") else "")
                             + reason)[:600]
        known = {name: bool(b.get("known_deviation")) for name, b in cells.items()}
        fixed = {name: bool(b.get("fixed")) for name, b in cells.items()}
        out.append({"id": bid, "statuses": statuses, "known": known, "fixed": fixed,
                    "why": why})
    return out
