"""Coverage per page: each sentence covered (a behaviour quotes it), untestable (an
untestable behaviour quotes it, or the data says why), not a claim (the data says why) or
uncovered; quotes and marks that match nothing in the installed page are stale (errors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kit.coverage import manpage
from kit.coverage.marks import PageData, load_dir
from kit.coverage.pages import load_page
from kit.coverage.sentences import PageText, normalise
from kit.spec.errors import SpecError

COVERED, UNTESTABLE, NOT_CLAIM, UNCOVERED = "covered", "untestable", "not a claim", "uncovered"
STATUSES = (COVERED, UNTESTABLE, NOT_CLAIM, UNCOVERED)


@dataclass(frozen=True)
class Quote:
    """One behaviour's citation, as coverage needs it."""

    behaviour: str
    file: str
    line: int
    page: str
    section: str
    quote: str
    untestable: bool = False


def quotes_of(behaviours) -> list[Quote]:
    return [Quote(b.id, b.file, b.line, b.cite.page, b.cite.section, b.cite.quote,
                  b.untestable is not None) for b in behaviours]


def quotes_of_verdicts(verdicts: list[dict]) -> list[Quote]:
    """The citations of a run's verdicts (what the report has at hand)."""
    return [Quote(v["id"], v.get("file", ""), v.get("line", 0), v["cite"]["page"],
                  v["cite"].get("section", ""), v["cite"]["quote"],
                  v.get("status") == "untestable")
            for v in verdicts if (v.get("cite") or {}).get("quote")]


@dataclass
class SentenceCoverage:
    index: int
    section: str
    text: str
    status: str = UNCOVERED
    reason: str = ""
    behaviours: list[str] = field(default_factory=list)


@dataclass
class PageCoverage:
    page: str
    installed: bool
    path: str | None = None
    footer: str | None = None           # "Linux man-pages 6.03"
    newer_page: dict | None = None      # what is cited where this machine lacks the page
    data_file: str | None = None
    sentences: list[SentenceCoverage] = field(default_factory=list)
    cited_by: list[str] = field(default_factory=list)   # behaviours quoting this page

    def counts(self) -> dict:
        out = {s: 0 for s in STATUSES}
        for s in self.sentences:
            out[s.status] += 1
        return out

    def percent(self) -> float | None:
        """Covered share of the testable sentences (not claims and untestable ones out)."""
        c = self.counts()
        testable = c[COVERED] + c[UNCOVERED]
        return round(100 * c[COVERED] / testable, 1) if testable else None


@dataclass
class Coverage:
    pages: list[PageCoverage]
    other_pages: dict[str, list[str]]       # cited pages without sentence data: behaviours
    man_pages: str | None                   # the package (version) the pages came from
    errors: list[SpecError] = field(default_factory=list)    # stale quotes and marks
    warnings: list[str] = field(default_factory=list)
    behaviour_ids: set[str] = field(default_factory=set)

    def totals(self) -> dict:
        out = {s: 0 for s in STATUSES}
        for page in self.pages:
            for k, v in page.counts().items():
                out[k] += v
        testable = out[COVERED] + out[UNCOVERED]
        out["percent"] = round(100 * out[COVERED] / testable, 1) if testable else None
        return out


def default_data_dir() -> Path:
    """The kit's own sentence data: sentences/ beside the kit package (a source checkout),
    else the copy a wheel carries in kit/data/sentences."""
    package = Path(__file__).resolve().parent.parent
    beside = package.parent / "sentences"
    return beside if beside.is_dir() else package / "data" / "sentences"


def _top(section: str) -> str:
    """The outermost part of a cited section ("DESCRIPTION, read(2)": DESCRIPTION)."""
    return section.split(",", 1)[0].strip().upper().replace("[", "").replace("]", "")


def _parts(top: str, hit: list[int], text: PageText) -> set[str]:
    """The section, subsections and tags a quote was found under, upper case."""
    out = {top.upper()}
    for i in hit:
        out.update(p.strip().upper().replace("[", "").replace("]", "")
                   for p in text.sentences[i].section.split(","))
    return out


def _stale_quote(q: Quote, page: str, where: str) -> SpecError:
    return SpecError(f"stale citation: the quote is in no sentence of {page} as installed "
                     f"here ({where}): {q.quote!r}", file=q.file, line=q.line,
                     behaviour=q.behaviour, field="cite.quote")


def _apply_quotes(cov: PageCoverage, text: PageText, quotes: list[Quote], result: Coverage):
    for q in quotes:
        found = text.find(q.quote)
        if not found:
            result.errors.append(_stale_quote(q, cov.page, cov.path))
            continue
        cited = _top(q.section)
        in_section = [hit for name, hit in found
                      if any(p.startswith(cited) for p in _parts(name, hit, text))]
        if not in_section:
            result.warnings.append(
                f"{q.file}:{q.line}: behaviour {q.behaviour} cites {q.page} section "
                f"{q.section!r}, but the quote is under {', '.join(sorted({n for n, _ in found}))}")
        for hit in in_section or [h for _, h in found]:
            for i in hit:
                s = cov.sentences[i]
                s.behaviours.append(q.behaviour)
                if not q.untestable:
                    s.status, s.reason = COVERED, ""
                elif s.status != COVERED:
                    s.status, s.reason = UNTESTABLE, f"untestable behaviour {q.behaviour}"


def _apply_marks(cov: PageCoverage, data: PageData, result: Coverage, known: set[str] | None):
    """KNOWN: every behaviour id of the spec set, to check `covered_by` names; None when
    only some behaviours are at hand (a report of a `-k` run), where unknown ones count
    for nothing."""
    for mark in data.marks:
        if mark.section:
            want = normalise(mark.section).upper()
            hits = [s for s in cov.sentences if s.section.upper() == want
                    or s.section.upper().startswith(want + ",")]
            what = f"section {mark.section!r}"
        else:
            needle = normalise(mark.sentence)
            hits = [s for s in cov.sentences if needle in s.text]
            what = f"sentence {mark.sentence!r}"
        if not hits:
            result.errors.append(SpecError(
                f"stale mark: {what} matches nothing in {cov.page} as installed here",
                file=mark.file, line=mark.line, field=mark.field))
            continue
        if mark.kind == "covered_by":
            _cover(hits, mark, cov, result, known)
            continue
        status = NOT_CLAIM if mark.kind == "not_claims" else UNTESTABLE
        for s in hits:
            if s.status == COVERED:
                if mark.sentence:   # a whole section may hold a covered sentence or two
                    result.warnings.append(
                        f"{mark.file}:{mark.line}: {mark.field} marks a sentence of "
                        f"{cov.page} {status}, but {', '.join(s.behaviours)} covers it")
                continue
            if s.status == UNTESTABLE and status == NOT_CLAIM:
                continue
            s.status, s.reason = status, mark.reason


def _cover(hits, mark, cov: PageCoverage, result: Coverage, known: set[str] | None):
    present = result.behaviour_ids
    unknown = [b for b in mark.behaviours if b not in present]
    if unknown and known is not None:
        result.errors.append(SpecError(
            f"no behaviour {', '.join(unknown)} in the spec set", file=mark.file,
            line=mark.line, field=f"{mark.field}.behaviours"))
        return
    ids = [b for b in mark.behaviours if b in present]
    if not ids:
        return
    for s in hits:
        s.status, s.reason = COVERED, mark.reason
        s.behaviours.extend(i for i in ids if i not in s.behaviours)


def compute(quotes: list[Quote], data_dir: Path, *, whole_set: bool = True) -> Coverage:
    """WHOLE_SET: QUOTES are the whole spec set (`kit coverage`), so the quotes of cited
    pages without sentence data (proc(5), signal(7), ...) are checked and `covered_by`
    names must exist; a report has only its run's behaviours and leaves both out."""
    data, errors = load_dir(data_dir)
    by_page: dict[str, list[Quote]] = {}
    for q in quotes:
        by_page.setdefault(q.page, []).append(q)
    result = Coverage([], {}, None, errors)
    result.behaviour_ids = {q.behaviour for q in quotes}
    described = {d.page for d in data}
    for page in sorted(set(by_page) - described) if whole_set else ():
        result.other_pages[page] = [q.behaviour for q in by_page[page]]
    for d in data:
        cov = PageCoverage(d.page, False, newer_page=d.newer_page, data_file=d.file,
                           cited_by=[q.behaviour for q in by_page.get(d.page, [])])
        result.pages.append(cov)
    checked = result.pages + [PageCoverage(p, False) for p in result.other_pages]
    paths = manpage.locate([cov.page for cov in checked])
    for cov in checked:
        quotes_here = by_page.get(cov.page, [])
        cov.path = paths[cov.page]
        if cov.path is None:
            if cov.newer_page is None and quotes_here:
                result.errors.append(SpecError(
                    f"{cov.page} is not installed here, so its quotes cannot be checked "
                    f"(install the man-pages that have it, or describe the page in "
                    f"{data_dir}/ with newer_page)", file=quotes_here[0].file,
                    line=quotes_here[0].line, behaviour=quotes_here[0].behaviour,
                    field="cite.page"))
            continue
        cov.installed = True
        text, cov.footer, package = load_page(cov.page, cov.path)
        result.man_pages = result.man_pages or package
        cov.sentences = [SentenceCoverage(s.index, s.section, s.text) for s in text.sentences]
        _apply_quotes(cov, text, quotes_here, result)
        data_here = next((d for d in data if d.page == cov.page), None)
        if data_here:
            _apply_marks(cov, data_here, result,
                         result.behaviour_ids if whole_set else None)
    return result


def summary(cov: Coverage) -> dict:
    """The plain record the report writers get: figures per page, no sentences' text
    except the uncovered ones."""
    pages = []
    for p in cov.pages:
        entry = {"page": p.page, "installed": p.installed, "percent": p.percent(),
                 "counts": p.counts(), "behaviours": len(p.cited_by),
                 "uncovered": [{"section": s.section, "text": s.text}
                               for s in p.sentences if s.status == UNCOVERED]}
        if not p.installed and p.newer_page:
            entry["newer_page"] = p.newer_page
        pages.append(entry)
    return {"man_pages": cov.man_pages, "footer": next((p.footer for p in cov.pages
                                                        if p.footer), None),
            "pages": pages, "totals": cov.totals(), "stale": len(cov.errors)}
