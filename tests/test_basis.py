"""Implementation behaviour (`cite.basis: implementation`) apart from documented claims: the
loader's field and its checks, and how the terminal summary, report.md, report.html and
`kit list` show the two apart."""

from __future__ import annotations

import json

from helpers import (
    QUOTE,
    READS_COUNTER,
    behaviour,
    line_of,
    load,
    load_one,
    run_kit,
    spec_text,
    write_spec,
)
from test_html_report import chromium  # noqa: F401 - the shared browser fixture

from kit.engine.target import Target
from kit.report import build_report
from kit.report.html import render_html
from kit.report.markdown import render_markdown
from kit.verdict import Verdict

IMPL_CITE = (f'{{page: eventfd(2), section: DESCRIPTION, quote: "{QUOTE}", '
             f'source: "beyond the page: fs/eventfd.c", basis: implementation}}')
DOCUMENTED = behaviour("x.basis.documented", READS_COUNTER, title="A documented claim")
IMPLEMENTATION = behaviour("x.basis.linux", READS_COUNTER, title="What Linux does",
                           cite=IMPL_CITE)


def test_basis_defaults_to_documented():
    assert load_one(spec_text(DOCUMENTED)).cite.basis == "documented"


def test_implementation_basis_loads_with_its_source():
    b = load_one(spec_text(IMPLEMENTATION))
    assert b.cite.basis == "implementation"
    assert b.cite.source == "beyond the page: fs/eventfd.c"


def test_implementation_without_a_source_is_an_error_naming_file_line_and_field():
    text = spec_text(behaviour("x.basis.bare", READS_COUNTER, cite=(
        "\n      page: eventfd(2)\n      section: DESCRIPTION\n"
        f'      quote: "{QUOTE}"\n      basis: implementation')))
    result = load(text)
    assert not result.behaviours
    [error] = result.errors
    assert error.file == "specs/x/t.yaml" and error.behaviour == "x.basis.bare"
    assert error.line == line_of(text, "basis: implementation")
    assert error.field == "cite.basis"
    assert "needs cite.source" in str(error)


def test_an_unknown_basis_is_refused_by_the_schema():
    text = spec_text(behaviour("x.basis.odd", READS_COUNTER, cite=(
        f'{{page: eventfd(2), section: DESCRIPTION, quote: "{QUOTE}", basis: folklore}}')))
    [error] = load(text).errors
    assert "folklore" in str(error) and "cite" in str(error)


def _report(*statuses: str) -> dict:
    """A report of one documented and one implementation behaviour, as the plugin makes it."""
    verdicts = []
    for b, status in zip(load(spec_text(DOCUMENTED, IMPLEMENTATION)).behaviours, statuses):
        verdicts.append(Verdict.of(b, status, message="expected 2, got 1").as_dict())
    return build_report(verdicts, Target.current(), started=0.0, profile="quick", seed=1)


def test_report_json_counts_documented_and_implementation_apart():
    report = _report("conforms", "deviates")
    assert report["summary"]["basis"] == {"documented": {"conforms": 1},
                                          "implementation": {"deviates": 1}}
    [impl] = [b for b in report["behaviours"] if b["id"] == "x.basis.linux"]
    assert impl["cite"]["basis"] == "implementation"


def test_report_md_marks_implementation_behaviour_and_counts_it():
    md = render_markdown(_report("conforms", "deviates"))
    assert "## Documented claims and implementation behaviour" in md
    assert "| implementation | 0 | 1 |" in md and "| documented | 1 | 0 |" in md
    assert "### `x.basis.linux`: deviates *(implementation)*" in md
    assert "| `x.basis.linux` | deviates | What Linux does *(implementation)* |" in md
    assert "| `x.basis.documented` | conforms | A documented claim |" in md


def test_report_md_without_implementation_behaviour_has_no_such_section():
    report = _report("conforms")
    assert "implementation" not in render_markdown(report)


def test_report_html_marks_filters_and_counts_implementation_behaviour():
    html = render_html([_report("conforms", "deviates")])
    assert 'data-basis="implementation"' in html and 'data-basis="documented"' in html
    assert html.count('<em class="impl">(implementation behaviour)</em>') == 1
    assert '<select id="f-basis">' in html
    assert "implementation behaviour (Linux beyond its man pages): deviates 1" in html
    assert "<strong>implementation behaviour</strong>, from: beyond the page: fs/eventfd.c" in html


def test_kit_list_marks_and_filters_by_basis(tmp_path):
    write_spec(tmp_path, spec_text(DOCUMENTED, IMPLEMENTATION))
    specs = str(tmp_path / "specs")
    listed = run_kit(tmp_path, "list", "--specs", specs, "--report", str(tmp_path / "none"))
    assert listed.ret == 0, listed.output
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert "[implementation] What Linux does" in lines["x.basis.linux"]
    assert "[implementation]" not in lines["x.basis.documented"]
    only = run_kit(tmp_path, "list", "--specs", specs, "--report", str(tmp_path / "none"),
                   "--basis", "implementation", "--json")
    assert only.ret == 0, only.output
    assert [(r["id"], r["basis"]) for r in json.loads(only.stdout)] == [
        ("x.basis.linux", "implementation")]


def test_terminal_summary_counts_implementation_behaviour_apart(tmp_path):
    write_spec(tmp_path, spec_text(DOCUMENTED, IMPLEMENTATION))
    report = tmp_path / "out"
    ran = run_kit(tmp_path, "run", "--specs", str(tmp_path / "specs"), "--report",
                  str(report), "-n", "0", "--profile", "quick", report_dir=report)
    assert ran.ret == 0, ran.output
    assert "of which implementation behaviour (Linux beyond its man pages): conforms: 1" \
        in ran.output
    assert ran.report["summary"]["basis"] == {"documented": {"conforms": 1},
                                              "implementation": {"conforms": 1}}


def test_report_html_claim_filter_shows_one_kind_in_a_browser(chromium, tmp_path):  # noqa: F811
    path = tmp_path / "report.html"
    path.write_text(render_html([_report("conforms", "deviates")]))
    context = chromium.new_context()
    try:
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        shown = "tr.behaviour:not([hidden])"
        ids = "rows => rows.map(r => r.dataset.id)"
        assert page.eval_on_selector_all(shown, ids) == ["x.basis.documented", "x.basis.linux"]
        page.select_option("#f-basis", "implementation")
        assert page.eval_on_selector_all(shown, ids) == ["x.basis.linux"]
        page.select_option("#f-basis", "documented")
        assert page.eval_on_selector_all(shown, ids) == ["x.basis.documented"]
        assert errors == []
    finally:
        context.close()


def test_kit_explain_says_implementation_behaviour_and_its_source(tmp_path):
    write_spec(tmp_path, spec_text(DOCUMENTED, IMPLEMENTATION))
    specs = str(tmp_path / "specs")
    impl = run_kit(tmp_path, "explain", "x.basis.linux", "--specs", specs, "--report",
                   str(tmp_path / "none"))
    assert impl.ret == 0, impl.output
    assert "Implementation behaviour (Linux beyond its man page)" in impl.stdout
    assert "From: beyond the page: fs/eventfd.c" in impl.stdout
    documented = run_kit(tmp_path, "explain", "x.basis.documented", "--specs", specs,
                         "--report", str(tmp_path / "none"))
    assert "Documented in eventfd(2), DESCRIPTION" in documented.stdout
    assert "Implementation behaviour" not in documented.stdout
