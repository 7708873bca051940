"""report.html: one self-contained page (no network) for one run or a matrix of targets.

Rows are behaviours, columns are targets; the page filters by family, status and text,
can show only the rows where targets differ, and opens a behaviour's details (citation,
spec as written, step trace, counterexample, replay command).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2

from kit.engine.records import StepRecord
from kit.report.ranking import GROUPS, deviation_counts, rank_reports, target_group
from kit.report.summary import basis_of, partial_note
from kit.report.target_text import kernel_text
from kit.verdict import STATUSES

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("kit.report", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)

COLOURS = {"conforms": "#2e7d32", "deviates": "#c62828", "timeout": "#ef6c00",
           "error": "#6a1b9a", "not applicable": "#78909c", "untestable": "#b0bec5",
           "missing": "#e0e0e0"}


def trace_text(trace: list[dict]) -> str:
    """The step trace as the terminal shows it (one renderer for both)."""
    lines = []
    for record in trace:
        lines.append(record["traceback"] if "traceback" in record
                     else StepRecord(**record).render())
    return "\n".join(lines)


def target_name(report: dict) -> str:
    t = report["target"]
    return t.get("name") or f"{t.get('platform', 'linux')} {t['release']}"


def _chart(targets: list[dict]) -> list[dict]:
    """Stacked bars, one per target, as SVG rectangles computed here (no JS library)."""
    bars, width = [], 360
    for i, t in enumerate(targets):
        total = sum(t["statuses"].values()) or 1
        x, parts = 0.0, []
        for status in STATUSES:
            n = t["statuses"].get(status, 0)
            if n:
                w = width * n / total
                parts.append({"x": round(x, 2), "w": round(w, 2), "colour": COLOURS[status],
                              "label": f"{status}: {n}"})
                x += w
        bars.append({"y": i * 28, "name": t["name"], "parts": parts})
    return bars


def _flatten(row: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def bench_table(bench: dict | None) -> dict | None:
    """The notification benchmark's results (bench.json from `kit bench`) as a table."""
    if not bench or not bench.get("results"):
        return None
    rows = [_flatten(r) for r in bench["results"]]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return {"columns": columns, "rows": [[r.get(c, "") for c in columns] for r in rows]}


def build_view(reports: list[dict]) -> dict:
    """What the template shows, with the targets (cards, columns) in REPORTS' order."""
    targets = []
    for report in reports:
        s = report["summary"]
        targets.append({"name": target_name(report), "target": report["target"],
                        "kernel": kernel_text(report["target"]),
                        "bench": bench_table(report.get("bench")),
                        "run": report["run"], "statuses": s["statuses"],
                        "partial": partial_note(report),
                        "families": s["families"], "conformance": s["conformance"],
                        "basis": s.get("basis") or {},
                        "group": target_group(report["target"]),
                        # for links: a merged `kit run` names its target "linux 6.18.0"
                        "anchor": re.sub(r"[^A-Za-z0-9._-]", "-", target_name(report)),
                        "counts": deviation_counts(report["behaviours"]),
                        "kit_version": report.get("kit_version", "")})
    rows: dict[str, dict] = {}
    for col, report in enumerate(reports):
        for b in report["behaviours"]:
            row = rows.setdefault(b["id"], {
                "id": b["id"], "title": b.get("title", ""), "family": b.get("family", ""),
                "cite": b.get("cite") or {}, "source": b.get("source", ""),
                "file": b.get("file", ""), "line": b.get("line", 0),
                "cells": [None] * len(reports)})
            if not row["title"] and b.get("title"):
                row.update(title=b["title"], cite=b.get("cite") or {})
            row["cells"][col] = dict(b, trace_text=trace_text(b.get("trace", [])))
    for row in rows.values():
        statuses = [c["status"] if c else "missing" for c in row["cells"]]
        row["statuses"] = statuses
        row["basis"] = basis_of(row)
        row["differs"] = len(set(statuses)) > 1
        row["known"] = [(targets[i]["name"], c["known_deviation"])
                        for i, c in enumerate(row["cells"]) if c and c.get("known_deviation")]
        row["fixed"] = [(targets[i]["name"], c["fixed"])
                        for i, c in enumerate(row["cells"]) if c and c.get("fixed")]
        row["variants"] = sorted({(targets[i]["name"], v) for i, c in enumerate(row["cells"])
                                  if c for v in c.get("variants", [])})
        row["gates"] = [(targets[i]["name"], g) for i, c in enumerate(row["cells"])
                        if c for g in c.get("gates", [])]
        # the same defect on every target that conforms to the kernel's side of it
        row["defect"] = next((c["documentation_defect"] for c in row["cells"]
                              if c and c.get("documentation_defect")), None)
    ordered = sorted(rows.values(), key=lambda r: (r["family"], r["id"]))
    families = sorted({r["family"] for r in ordered})
    coverage = next((r["coverage"] for r in reports if r.get("coverage")), None)
    groups = [{"key": key, "label": label, "about": about,
               "targets": [t for t in targets if t["group"] == key]}
              for key, label, about in GROUPS]
    return {"targets": targets, "groups": [g for g in groups if g["targets"]], "rows": ordered,
            "families": families, "coverage": coverage,
            "statuses": list(STATUSES), "colours": COLOURS, "chart": _chart(targets),
            "chart_height": 28 * len(targets)}


def render_html(reports: list[dict], *, skipped: list[tuple[str, str]] | None = None,
                title: str = "Syscall conformance report") -> str:
    from kit.report.diff import differences

    # one order for the whole page: grouped, the most deviating target first in its group
    reports = rank_reports(reports)
    view = build_view(reports)
    return _ENV.get_template("report.html.j2").render(
        **view, title=title, json_dumps=json.dumps, skipped=skipped or [],
        differences=differences(reports) if len(reports) > 1 else [])


def write_html(path: Path, reports: list[dict], **kw) -> Path:
    from kit.report.atomic import write_atomic

    return write_atomic(path, render_html(reports, **kw))
