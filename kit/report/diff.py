"""What changed between two report.json files: two kernels, or two runs of one."""

from __future__ import annotations

from kit.report.html import target_name


def diff_reports(old: dict, new: dict) -> dict:
    before = {b["id"]: b for b in old["behaviours"]}
    after = {b["id"]: b for b in new["behaviours"]}
    changed = [{"id": bid, "before": before[bid]["status"], "after": after[bid]["status"],
                "title": after[bid].get("title", ""),
                "message": after[bid].get("message", "")}
               for bid in sorted(before.keys() & after.keys())
               if before[bid]["status"] != after[bid]["status"]]
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
