"""`kit coverage`: quotes mapped to the sentences of the installed man pages, stale quotes
and marks as errors naming file, line and field, the sentence data, and the report's
coverage section."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap

import pytest
from helpers import behaviour, line_of, run_kit, spec_text, write_spec

from kit.coverage.sentences import parse
from kit.report import build_report
from kit.report.html import render_html


def _installed(section: str, name: str) -> bool:
    return bool(shutil.which("man")) and subprocess.run(
        ["man", "-w", section, name], capture_output=True, check=False).returncode == 0


pytestmark = pytest.mark.skipif(not _installed("2", "eventfd"),
                                reason="man-db and manpages-dev are not installed "
                                       "(./bootstrap installs them as root)")

REAL = "Each successful read(2) returns an 8-byte integer."
UNTESTABLE = "untestable: only the citation matters here\n"


def _cite(quote: str, page: str = "eventfd(2)", section: str = "DESCRIPTION, read(2)") -> str:
    return f'{{page: "{page}", section: "{section}", quote: "{quote}"}}'


def _data(tmp_path, name: str, text: str):
    path = tmp_path / "sentences" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _coverage(tmp_path, *args):
    return run_kit(tmp_path, "coverage", "--specs", str(tmp_path / "specs"),
                   "--sentences", str(tmp_path / "sentences"), *args)


def test_the_kits_own_quotes_are_all_found_and_every_page_is_reported(tmp_path):
    ran = run_kit(tmp_path, "coverage", "--json")
    assert ran.ret == 0, ran.output
    out = json.loads(ran.stdout)
    assert out["errors"] == []
    assert out["man_pages"] and out["footer"].startswith("Linux man-pages")
    pages = {p["page"]: p for p in out["pages"]}
    for page in ("eventfd(2)", "epoll(7)", "epoll_create(2)", "epoll_ctl(2)", "epoll_wait(2)",
                 "timerfd_create(2)", "signalfd(2)"):
        assert pages[page]["installed"], page
        assert pages[page]["percent"] is not None
        assert pages[page]["counts"]["covered"] > 0
    ioctl = pages["ioctl_eventpoll(2)"]
    if not ioctl["installed"]:   # bookworm's man-pages 6.03 predates the page
        assert "fs/eventpoll.c" in ioctl["newer_page"]["source"]
    assert "proc(5)" in out["other_pages"]   # quotes of other pages are checked too


def test_an_altered_quote_is_a_stale_citation_naming_file_line_and_behaviour(tmp_path):
    text = spec_text(behaviour("x.cov.fine", UNTESTABLE, cite=_cite(REAL)),
                     behaviour("x.cov.stale", UNTESTABLE,
                               cite=_cite(REAL.replace("8-byte", "16-byte"))))
    spec = write_spec(tmp_path, text)
    _data(tmp_path, "eventfd.2.yaml", "page: eventfd(2)\n")
    ran = _coverage(tmp_path)
    assert ran.ret == 2, ran.output
    line = line_of(text, "id: x.cov.stale")
    assert (f"{spec}:{line}: behaviour x.cov.stale field cite.quote: stale citation: the "
            f"quote is in no sentence of eventfd(2)") in ran.stderr
    assert "16-byte" in ran.stderr and "x.cov.fine" not in ran.stderr

    spec.write_text(spec_text(behaviour("x.cov.fine", UNTESTABLE, cite=_cite(REAL))))
    ran = _coverage(tmp_path, "--json")
    assert ran.ret == 0, ran.output
    sentence = next(s for s in json.loads(ran.stdout)["pages"][0]["sentences"]
                    if s["text"] == REAL)
    assert sentence["status"] == "untestable" and sentence["behaviours"] == ["x.cov.fine"]


def test_whitespace_hyphens_and_quote_marks_are_forgiven_nothing_else(tmp_path):
    loose = "Each  successful read(2)\u2010returns an 8-byte integer."
    write_spec(tmp_path, spec_text(behaviour("x.cov.loose", UNTESTABLE, cite=_cite(
        "Each  successful read(2) returns an 8\u2010byte integer."))))
    _data(tmp_path, "eventfd.2.yaml", "page: eventfd(2)\n")
    assert _coverage(tmp_path).ret == 0
    write_spec(tmp_path, spec_text(behaviour("x.cov.loose", UNTESTABLE, cite=_cite(loose))))
    assert _coverage(tmp_path).ret == 2   # "read(2)-returns" is another text


def test_a_quote_from_a_tag_into_its_body_and_a_covered_sentence_count(tmp_path):
    write_spec(tmp_path, spec_text(behaviour("x.cov.tag", UNTESTABLE, cite=_cite(
        "EFD_CLOEXEC (since Linux 2.6.27) Set the close-on-exec (FD_CLOEXEC) flag",
        section="DESCRIPTION"))))
    _data(tmp_path, "eventfd.2.yaml", "page: eventfd(2)\n")
    ran = _coverage(tmp_path, "--json")
    assert ran.ret == 0, ran.output
    hit = [s for s in json.loads(ran.stdout)["pages"][0]["sentences"] if s["behaviours"]]
    assert [s["section"] for s in hit] == ["DESCRIPTION, EFD_CLOEXEC (since Linux 2.6.27)"]


def test_a_quote_under_another_section_is_a_warning(tmp_path):
    write_spec(tmp_path, spec_text(behaviour("x.cov.where", UNTESTABLE,
                                             cite=_cite(REAL, section="NOTES"))))
    _data(tmp_path, "eventfd.2.yaml", "page: eventfd(2)\n")
    ran = _coverage(tmp_path)
    assert ran.ret == 0, ran.output
    assert ("behaviour x.cov.where cites eventfd(2) section 'NOTES', but the quote is under "
            "DESCRIPTION") in ran.stdout


def test_marks_need_a_reason_and_a_stale_mark_is_an_error(tmp_path):
    write_spec(tmp_path, spec_text(behaviour("x.cov.fine", UNTESTABLE, cite=_cite(REAL))))
    data = _data(tmp_path, "eventfd.2.yaml", """
        page: eventfd(2)
        not_claims:
          - section: SEE ALSO
            reason: cross-references
          - sentence: "a sentence the page never had"
            reason: an example
        """)
    ran = _coverage(tmp_path)
    assert ran.ret == 2, ran.output
    assert (f"{data}:5: field not_claims[1]: stale mark: sentence 'a sentence the page never "
            f"had' matches nothing in eventfd(2)") in ran.stderr

    data.write_text("page: eventfd(2)\nuntestable:\n  - sentence: ENOMEM\n    reasn: typo\n")
    ran = _coverage(tmp_path)
    assert ran.ret == 2
    assert f"{data}:3: field untestable[0]:" in ran.stderr

    data.write_text("page: eventfd(2)\nuntestable:\n  - sentence: ENOMEM There was\n"
                    "    reason: the kernel's allocator cannot be made to fail from here\n")
    ran = _coverage(tmp_path, "--json")
    assert ran.ret == 0, ran.output
    marked = [s for s in json.loads(ran.stdout)["pages"][0]["sentences"]
              if s["status"] == "untestable" and s["text"].startswith("ENOMEM")]
    assert [s["reason"] for s in marked] == [
        "the kernel's allocator cannot be made to fail from here"]


def test_a_page_this_machine_lacks_is_shown_with_the_newer_page_cited(tmp_path):
    write_spec(tmp_path, spec_text(behaviour("x.cov.newer", UNTESTABLE, cite=_cite(
        "a sentence of a newer page", page="kit_no_such_page(2)", section="DESCRIPTION"))))
    _data(tmp_path, "kit_no_such_page.2.yaml", """
        page: kit_no_such_page(2)
        newer_page:
          cited: man-pages 9.99, kit_no_such_page(2)
          source: fs/nothing.c
          note: newer than the installed man-pages
        """)
    ran = _coverage(tmp_path)
    assert ran.ret == 0, ran.output
    assert ("kit_no_such_page(2)  not installed here, newer page cited: man-pages 9.99, "
            "kit_no_such_page(2) (1 behaviours)") in ran.stdout
    (tmp_path / "sentences" / "kit_no_such_page.2.yaml").unlink()
    ran = _coverage(tmp_path)
    assert ran.ret == 2
    assert "field cite.page: kit_no_such_page(2) is not installed here" in ran.stderr


def test_sections_list_items_and_tags_bound_sentences():
    rendered = textwrap.dedent("""\
        demo(2)                    System Calls Manual                    demo(2)

        DESCRIPTION
               First claim, e.g. this one.  Second claim (see poll(2).)

               •  An item without a full stop
               •  Another item.

               FLAG_A (since Linux 1.0)
                      Does one thing.  Then another.

           A subsection
               Its sentence.

        Linux man-pages 6.03              2023-02-05                      demo(2)
        """)
    text = parse("demo(2)", rendered)
    assert [(s.section, s.text) for s in text.sentences] == [
        ("DESCRIPTION", "First claim, e.g. this one."),
        ("DESCRIPTION", "Second claim (see poll(2).)"),
        ("DESCRIPTION", "An item without a full stop"),
        ("DESCRIPTION", "Another item."),
        ("DESCRIPTION, FLAG_A (since Linux 1.0)", "Does one thing."),
        ("DESCRIPTION, FLAG_A (since Linux 1.0)", "Then another."),
        ("DESCRIPTION, A subsection", "Its sentence."),
    ]
    assert text.find("full stop Another") == [("DESCRIPTION", [2, 3])]
    assert text.find("FLAG_A (since Linux 1.0) Does one") == [("DESCRIPTION", [4])]
    assert text.find("not there") == []


def test_the_html_report_shows_coverage_per_page():
    coverage = {"man_pages": "manpages 6.03-2", "footer": "Linux man-pages 6.03", "stale": 0,
                "totals": {"covered": 3, "untestable": 1, "not a claim": 2, "uncovered": 1,
                           "percent": 75.0},
                "pages": [{"page": "eventfd(2)", "installed": True, "percent": 75.0,
                           "behaviours": 3, "counts": {"covered": 3, "untestable": 1,
                                                       "not a claim": 2, "uncovered": 1},
                           "uncovered": [{"section": "NOTES", "text": "An open claim."}]},
                          {"page": "ioctl_eventpoll(2)", "installed": False, "percent": None,
                           "behaviours": 2, "counts": {}, "uncovered": [],
                           "newer_page": {"cited": "man-pages 6.9", "source": "fs/eventpoll.c",
                                          "note": "newer"}}]}
    from kit.engine.target import Target

    report = build_report([], Target.current(), started=0.0, profile="quick", seed=0,
                          coverage=coverage)
    html = render_html([report])
    assert "Man-page coverage" in html and "manpages 6.03-2" in html
    assert '<tr data-page="eventfd(2)"><td>eventfd(2)</td><td>3</td>' in html
    assert "75.0%" in html and "An open claim." in html
    assert "not installed here, newer page cited: man-pages 6.9" in html


def test_kit_run_puts_the_coverage_of_its_behaviours_in_the_report(tmp_path):
    write_spec(tmp_path, spec_text(behaviour("x.cov.run", """
        steps:
          - eventfd: {initval: 3, flags: EFD_NONBLOCK}
            as: efd
          - read_u64: {fd: $efd}
            expect: {returns: 8, value: 3}
        """, cite=_cite(REAL))))
    report = tmp_path / "out"
    ran = run_kit(tmp_path, "run", "--specs", str(tmp_path / "specs"), "--report",
                  str(report), "-n", "0", report_dir=report)
    assert ran.ret == 0, ran.output
    coverage = ran.report["coverage"]
    page = next(p for p in coverage["pages"] if p["page"] == "eventfd(2)")
    assert page["counts"]["covered"] == 1 and page["behaviours"] == 1
    assert "Man-page coverage" in (report / "report.html").read_text()


def test_a_report_without_man_pages_says_why_its_coverage_is_missing():
    from kit.engine.target import Target

    report = build_report([], Target.current(), started=0.0, profile="quick", seed=0,
                          coverage={"error": "ManError: man (man-db) is not installed"})
    assert "not computed: ManError: man (man-db) is not installed" in render_html([report])


def test_covered_by_names_behaviours_that_exist(tmp_path):
    write_spec(tmp_path, spec_text(behaviour("x.cov.fine", UNTESTABLE, cite=_cite(REAL)),
                                   behaviour("x.cov.checks", "steps:\n  - eventfd: {}\n",
                                             cite=_cite(REAL))))
    data = _data(tmp_path, "eventfd.2.yaml", """
        page: eventfd(2)
        covered_by:
          - sentence: "A read(2) fails with the error EINVAL if the size"
            behaviours: [x.cov.checks, x.cov.gone]
            reason: the same experiment checks it
        """)
    ran = _coverage(tmp_path)
    assert ran.ret == 2, ran.output
    assert (f"{data}:3: field covered_by[0].behaviours: no behaviour x.cov.gone in the spec "
            f"set") in ran.stderr
    data.write_text(data.read_text().replace(", x.cov.gone", ""))
    ran = _coverage(tmp_path, "--json")
    assert ran.ret == 0, ran.output
    hit = next(s for s in json.loads(ran.stdout)["pages"][0]["sentences"]
               if s["text"].startswith("A read(2) fails with the error EINVAL"))
    assert (hit["status"], hit["behaviours"]) == ("covered", ["x.cov.checks"])


def test_report_md_has_the_coverage_table():
    from kit.engine.target import Target
    from kit.report.markdown import render_markdown

    coverage = {"man_pages": "manpages 6.03-2", "pages": [
        {"page": "eventfd(2)", "installed": True, "percent": 50.0, "behaviours": 1,
         "counts": {"covered": 1, "untestable": 0, "not a claim": 3, "uncovered": 1},
         "uncovered": []}]}
    report = build_report([], Target.current(), started=0.0, profile="quick", seed=0,
                          coverage=coverage)
    assert "| eventfd(2) | 1 | 0 | 3 | 1 | 50.0% |" in render_markdown(report)
