"""report.md: a summary a person reads in a terminal, a pull request or a release note;
matrix.md: the same for a matrix of targets, for CI logs and pull requests."""

from __future__ import annotations

from kit.report.ranking import GROUPS, rank, target_group
from kit.report.summary import basis_of, partial_note
from kit.report.target_text import judged_as, kernel_text


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _coverage(cov: dict | None) -> list[str]:
    """The man-page coverage per page (kit.coverage.compute.summary), as a table."""
    if not cov:
        return []
    if cov.get("error"):
        return ["", "## Man-page coverage", "", f"not computed: {_cell(cov['error'])}"]
    out = ["", "## Man-page coverage", "",
           (f"Sentences of the installed man pages ({cov.get('man_pages') or 'package unknown'})"
            " that this run's behaviours quote; `kit coverage` lists them."), "",
           "| page | covered | untestable | not a claim | uncovered | covered of testable |",
           "|---|---|---|---|---|---|"]
    for p in cov["pages"]:
        if not p["installed"]:
            cited = (p.get("newer_page") or {}).get("cited", "")
            out.append(f"| {p['page']} | not installed here, newer page cited: {_cell(cited)} "
                       "| | | | |")
            continue
        c, pct = p["counts"], p["percent"]
        out.append(f"| {p['page']} | {c['covered']} | {c['untestable']} | {c['not a claim']} "
                   f"| {c['uncovered']} | {'n/a' if pct is None else f'{pct:.1f}%'} |")
    return out


def render_markdown(report: dict) -> str:
    t, s = report["target"], report["summary"]
    ratio = s["conformance"]
    note = partial_note(report)
    out = [
        "# Syscall conformance report",
        "",
        *([f"> **{note}**", ""] if note else []),
        f"- kernel: `{t['release']}` ({t['version_string']})",
        *([f"- kernel version: {judged_as(t)}"] if judged_as(t) else []),
        f"- architecture: {t['arch']}; libc: {t['libc']}; platform: {t['platform']}",
        *([f"- kernel config: {t['kernel_config']}"] if t.get("kernel_config") else []),
        f"- kit {report['kit_version']}, profile {report['run']['profile']}, "
        f"seed {report['run']['seed']}, {report['run']['duration']}s"
        + (f", run {report['run']['id']}" if report["run"].get("id") else ""),
        f"- conformance: {ratio:.1%} of checked behaviours" if ratio is not None
        else "- conformance: nothing was checked",
        "",
        "| status | behaviours |",
        "|---|---|",
    ]
    out += [f"| {status} | {n} |" for status, n in s["statuses"].items()]
    out += ["", "## By family", "", "| family | " + " | ".join(s["statuses"]) + " |",
            "|---|" + "---|" * len(s["statuses"])]
    for family, counts in s["families"].items():
        out.append(f"| {family} | " + " | ".join(str(counts.get(st, 0))
                                                 for st in s["statuses"]) + " |")
    basis = s.get("basis") or {}
    if basis.get("implementation"):
        out += ["", "## Documented claims and implementation behaviour", "",
                ("Implementation behaviour is what Linux does where its man page is silent or "
                 "looser (cited from the kernel's code or a selftest); it is marked "
                 "*(implementation)* below."), "",
                "| basis | " + " | ".join(s["statuses"]) + " |",
                "|---|" + "---|" * len(s["statuses"])]
        for name, counts in basis.items():
            out.append(f"| {name} | " + " | ".join(str(counts.get(st, 0))
                                                   for st in s["statuses"]) + " |")
    problems = [b for b in report["behaviours"]
                if b["status"] in ("deviates", "timeout", "error")]
    if problems:
        out += ["", "## Deviations, timeouts and errors", ""]
        for b in problems:
            known = f" — known: {b['known_deviation']}" if b.get("known_deviation") else ""
            known += " *(implementation)*" if basis_of(b) == "implementation" else ""
            out += [f"### `{b['id']}`: {b['status']}{known}", ""]
            if b.get("cite"):
                c = b["cite"]
                out += [f"{b['title']} — {c['page']}, {c['section']}:", "", f"> {c['quote']}",
                        ""]
            out += [f"- spec: `{b['file']}:{b['line']}`", f"- {b['message']}"]
            out += [f"- kernel change: {g}" for g in b.get("gates", [])]
            if b.get("counterexample") is not None:
                out.append(f"- counterexample: `{b['counterexample']}`")
            if b.get("replay"):
                out.append(f"- replay: `{b['replay']}`")
            out.append("")
    fixed = [b for b in report["behaviours"] if b.get("fixed")]
    if fixed:
        out += ["", "## Fixed: known deviations no longer seen", ""]
        out += [f"- `{b['id']}` conforms now: {_cell(b['fixed'])}" for b in fixed]
    defects = [b for b in report["behaviours"] if b.get("documentation_defect")]
    if defects:
        out += ["", "## Documentation defects", "",
                "Where the page and the kernel disagree on every kernel: not a deviation of "
                "the kernel; each behaviour checks what the kernel does.", ""]
        for b in defects:
            d = b["documentation_defect"]
            since = f" (since {d['since']})" if d.get("since") else ""
            out.append(f"- `{b['id']}` ({b['cite'].get('page', '')}): the page says "
                       f"{_cell(d['claim'])}; the kernel {_cell(d['kernel_does'])}{since}. "
                       f"Evidence: {_cell(d['evidence'])}")
    changes = [b for b in report["behaviours"] if b.get("gates")]
    if changes:
        out += ["", "## Kernel changes: which rule this kernel was judged by", ""]
        out += [f"- `{b['id']}` {_cell(g)}" for b in changes for g in b["gates"]]
    gated = [b for b in report["behaviours"] if b.get("variants")]
    if gated:
        out += ["", "## Kernel-version-specific expectations applied", ""]
        for b in gated:
            for v in b["variants"]:
                out.append(f"- `{b['id']}` {_cell(v)}")
    skipped = [b for b in report["behaviours"] if b["status"] in ("not applicable", "untestable")]
    if skipped:
        out += ["", "## Not applicable and untestable", "", "| behaviour | status | reason |",
                "|---|---|---|"]
        out += [f"| `{b['id']}` | {b['status']} | {_cell(b['message'])} |" for b in skipped]
    out += _coverage(report.get("coverage"))
    out += ["", "## All behaviours", "", "| behaviour | status | title | source |",
            "|---|---|---|---|"]
    for b in report["behaviours"]:
        cite = f"{b['cite'].get('page', '')} {b['cite'].get('section', '')}" if b.get(
            "cite") else ""
        status = b["status"] + (" (fixed)" if b.get("fixed") else "") + (
            " (documentation defect)" if b.get("documentation_defect") else "")
        title = _cell(b["title"]) + (" *(implementation)*" if basis_of(b) == "implementation"
                                     else "")
        out.append(f"| `{b['id']}` | {status} | {title} | {_cell(cite)} |")
    return "\n".join(out) + "\n"


def _matrix_group(entry: dict) -> str:
    """A matrix.json target's group: from its report's target, or for a target that did not
    run, from what kit matrix recorded of it (kind, platform)."""
    return target_group(entry.get("target") or entry.get("metadata") or {})


def render_matrix_markdown(matrix: dict) -> str:
    """matrix.md: the targets grouped as report.html groups them (real kernels, other
    implementations, userlands), the most deviating first in each group, then the
    behaviours whose verdicts differ, each target in that same order."""
    entries = rank(matrix["targets"], _matrix_group,
                   lambda e: e.get("deviations") if e.get("status") == "ran" else None)
    lines = ["# Syscall conformance matrix", "",
             ("Targets by group, the most deviating first in each: deviations not recorded "
              "as known, then known deviations, then timeouts.")]
    for key, label, about in GROUPS:
        members = [e for e in entries if _matrix_group(e) == key]
        if not members:
            continue
        lines += ["", f"## {label}", "", f"{about[0].upper()}{about[1:]}.", "",
                  ("| target | result | kernel | how | new deviations | known deviations "
                   "| timeouts |"), "|---|---|---|---|---|---|---|"]
        for t in members:
            kernel = kernel_text(t["target"]) if t.get("target") else ""
            counts = t.get("deviations") or {}
            figures = " | ".join(str(counts[k]) if k in counts else ""
                                 for k in ("new", "known", "timeouts"))
            lines.append(f"| {t['name']} | {t['status']}"
                         f"{': ' + _cell(t['reason']) if t.get('reason') else ''}"
                         f" | {kernel} | {_cell(t['metadata'].get('how', ''))} | {figures} |")
    order = {e["name"]: i for i, e in enumerate(entries)}
    lines += ["", "## Where targets differ", ""]
    if not matrix["differences"]:
        lines.append("No behaviour has different verdicts on the targets that ran.")
    for d in matrix["differences"]:
        names = sorted(d["statuses"], key=lambda n: order.get(n, len(order)))
        cells = ", ".join(f"{name}: {d['statuses'][name]}"
                          + (" (known)" if d["known"].get(name) else "") for name in names)
        lines.append(f"- `{d['id']}`: {cells}")
        for name in sorted(d["why"], key=lambda n: order.get(n, len(order))):
            lines.append(f"  - {name}: {d['why'][name]}")
        for t in sorted(matrix["targets"], key=lambda t: order.get(t["name"], len(order))):
            if d["id"] in t.get("replay", {}):   # where it deviated: how to see it again
                lines.append(f"  - replay on {t['name']}: `{t['replay'][d['id']]}`")
    return "\n".join(lines) + "\n"
