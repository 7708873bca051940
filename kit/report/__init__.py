"""Report writers: report.json (the record), report.md and report.html (for people); junit.xml comes
from pytest's own --junitxml, pointed into the same directory by the plugin."""

from __future__ import annotations

import json
import time
from pathlib import Path

import kit
from kit.engine.target import Target
from kit.report.html import write_html
from kit.report.markdown import render_markdown
from kit.report.summary import by_family, conformance_ratio, status_counts

FORMAT = "kit-report/1"


def build_report(verdicts: list[dict], target: Target, *, started: float, profile: str,
                 seed: int) -> dict:
    ordered = sorted(verdicts, key=lambda v: v["id"])
    return {
        "format": FORMAT,
        "kit_version": kit.__version__,
        "target": target.describe(),
        "run": {"started": started, "finished": time.time(), "profile": profile, "seed": seed,
                "duration": round(time.time() - started, 3)},
        "summary": {"statuses": status_counts(ordered), "families": by_family(ordered),
                    "conformance": conformance_ratio(ordered), "behaviours": len(ordered),
                    # conform although a known deviation is recorded for this target
                    "fixed": [v["id"] for v in ordered if v.get("fixed")]},
        "behaviours": ordered,
    }


def write_reports(directory: Path, verdicts: list[dict], target: Target, **run) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    report = build_report(verdicts, target, **run)
    bench = directory / "bench.json"
    if bench.exists():  # `kit bench` wrote it: its figures sit beside the verdicts
        report["bench"] = json.loads(bench.read_text())
    json_path = directory / "report.json"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    md_path = directory / "report.md"
    md_path.write_text(render_markdown(report))
    html_path = write_html(directory / "report.html", [report])
    return [json_path, md_path, html_path]
