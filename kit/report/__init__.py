"""Report writers: report.json (the record), report.md and report.html (for people); junit.xml comes
from pytest's own --junitxml, pointed into the same staging directory by the plugin. A set is
staged and then swapped in whole (kit.report.reportset)."""

from __future__ import annotations

import json
import time

import kit
from kit.engine.target import Target
from kit.report.html import render_html
from kit.report.markdown import render_markdown
from kit.report.reportset import Staging
from kit.report.summary import by_basis, by_family, conformance_ratio, status_counts

FORMAT = "kit-report/1"


def build_report(verdicts: list[dict], target: Target, *, started: float, profile: str,
                 seed: int, run_id: str | None = None, partial: dict | None = None,
                 bench: dict | None = None, coverage: dict | None = None) -> dict:
    """PARTIAL, for a run that did not check everything it selected:
    {"reason": ..., "not_run": [ids]}. COVERAGE: the man-page coverage summary
    (kit.coverage.compute.summary), shown per page."""
    ordered = sorted(verdicts, key=lambda v: v["id"])
    report = {
        "format": FORMAT,
        "kit_version": kit.__version__,
        "target": target.describe(),
        "run": {"id": run_id, "started": started, "finished": time.time(), "profile": profile,
                "seed": seed, "duration": round(time.time() - started, 3)},
        "partial": bool(partial),
        "summary": {"statuses": status_counts(ordered), "families": by_family(ordered),
                    "basis": by_basis(ordered),
                    "conformance": conformance_ratio(ordered), "behaviours": len(ordered),
                    # conform although a known deviation is recorded for this target
                    "fixed": [v["id"] for v in ordered if v.get("fixed")],
                    # conform to the kernel's side of a recorded documentation defect:
                    # counted apart, neither a deviation nor plain conformance
                    "documentation_defects": [v["id"] for v in ordered
                                              if v.get("documentation_defect")]},
        "behaviours": ordered,
    }
    if partial:
        report.update(partial_reason=partial["reason"], not_run=len(partial["not_run"]),
                      not_run_ids=sorted(partial["not_run"]))
    if bench:
        report["bench"] = bench
    if coverage:
        report["coverage"] = coverage
    return report


def stage_reports(staging: Staging, report: dict) -> None:
    """Write REPORT's files into STAGING (they reach the report directory on commit)."""
    staging.write("report.json", json.dumps(report, indent=2, default=str) + "\n")
    staging.write("report.md", render_markdown(report))
    staging.write("report.html", render_html([report]))
    if report.get("bench"):
        staging.write("bench.json", json.dumps(report["bench"], indent=2, default=str) + "\n")
