"""`kit coverage` output: a table per page and the sentences still uncovered (terminal),
or everything (--json)."""

from __future__ import annotations

from dataclasses import asdict

from kit.coverage.compute import COVERED, NOT_CLAIM, STATUSES, UNCOVERED, UNTESTABLE, Coverage


def _percent(value) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def as_json(cov: Coverage) -> dict:
    pages = []
    for p in cov.pages:
        entry = asdict(p)
        entry.update(counts=p.counts(), percent=p.percent())
        pages.append(entry)
    return {"man_pages": cov.man_pages,
            "footer": next((p.footer for p in cov.pages if p.footer), None),
            "pages": pages, "totals": cov.totals(), "other_pages": cov.other_pages,
            "errors": [str(e) for e in cov.errors], "warnings": cov.warnings}


def as_text(cov: Coverage, *, every_sentence: bool = False) -> str:
    footer = next((p.footer for p in cov.pages if p.footer), None)
    out = [f"man pages read: {cov.man_pages or 'package unknown'}"
           + (f" ({footer})" if footer else ""), ""]
    head = f"{'page':<20} {COVERED:>8} {UNTESTABLE:>10} {NOT_CLAIM:>11} {UNCOVERED:>9}  " \
           f"covered of testable"
    out.append(head)
    for p in cov.pages:
        if not p.installed:
            newer = p.newer_page or {}
            out.append(f"{p.page:<20} not installed here, newer page cited: "
                       f"{newer.get('cited', '?')} ({len(p.cited_by)} behaviours)")
            continue
        c = p.counts()
        out.append(f"{p.page:<20} {c[COVERED]:>8} {c[UNTESTABLE]:>10} {c[NOT_CLAIM]:>11} "
                   f"{c[UNCOVERED]:>9}  {_percent(p.percent())}")
    t = cov.totals()
    out.append(f"{'total':<20} {t[COVERED]:>8} {t[UNTESTABLE]:>10} {t[NOT_CLAIM]:>11} "
               f"{t[UNCOVERED]:>9}  {_percent(t['percent'])}")
    for p in cov.pages:
        if not p.installed and p.newer_page:
            out += ["", f"{p.page}: {p.newer_page['note']}",
                    f"  cited: {p.newer_page['cited']}", f"  source: {p.newer_page['source']}"]
    shown = STATUSES if every_sentence else (UNCOVERED,)
    for p in cov.pages:
        rows = [s for s in p.sentences if s.status in shown]
        if not rows:
            continue
        out += ["", f"{p.page}: {'sentences' if every_sentence else 'uncovered sentences'}"]
        for s in rows:
            status = "" if not every_sentence else f"[{s.status}] "
            why = f"  ({s.reason or ', '.join(s.behaviours)})" if every_sentence and (
                s.reason or s.behaviours) else ""
            out.append(f"  {status}{s.section}: {s.text}{why}")
    if cov.other_pages:
        out += ["", "other pages cited (quotes checked, no sentence data): "
                + ", ".join(f"{page} ({len(ids)})" for page, ids in cov.other_pages.items())]
    if cov.warnings:
        out += ["", "warnings:"] + [f"  {w}" for w in cov.warnings]
    return "\n".join(out)
