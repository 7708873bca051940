"""Counting verdicts, shared by every writer."""

from __future__ import annotations

from collections import Counter

from kit.verdict import STATUSES


def status_counts(verdicts: list[dict]) -> dict[str, int]:
    counts = Counter(v["status"] for v in verdicts)
    return {s: counts[s] for s in STATUSES if counts[s]}


def by_family(verdicts: list[dict]) -> dict[str, dict[str, int]]:
    families: dict[str, list[dict]] = {}
    for v in verdicts:
        families.setdefault(v.get("family") or "?", []).append(v)
    return {name: status_counts(vs) for name, vs in sorted(families.items())}


def basis_of(verdict: dict) -> str:
    """documented or implementation (reports written before the field: documented)."""
    return (verdict.get("cite") or {}).get("basis") or "documented"


def by_basis(verdicts: list[dict]) -> dict[str, dict[str, int]]:
    """Status counts of documented claims and of implementation behaviour, apart."""
    groups: dict[str, list[dict]] = {}
    for v in verdicts:
        groups.setdefault(basis_of(v), []).append(v)
    return {name: status_counts(vs) for name, vs in sorted(groups.items())}


def conformance_ratio(verdicts: list[dict]) -> float | None:
    """Share of the behaviours that were checked (conform or not) that conform."""
    checked = [v for v in verdicts if v["status"] in ("conforms", "deviates", "timeout")]
    if not checked:
        return None
    return sum(v["status"] == "conforms" for v in checked) / len(checked)


def partial_note(report: dict) -> str | None:
    """One sentence for a run that did not check everything it selected, else None."""
    if not report.get("partial"):
        return None
    return (f"Partial run: {report.get('partial_reason') or 'interrupted'}; "
            f"{report.get('not_run', '?')} selected behaviour(s) were not run, so this "
            f"report is incomplete.")
