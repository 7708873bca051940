"""The HTML report in a real browser (Debian's chromium through Playwright): it loads
with no console errors and no network, its filters work, and a deviation's details open
with the citation, the trace and the replay command."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kit.report.browser import chromium_path
from kit.report.html import write_html

SPECS = """
family: demo
behaviours:
  - id: demo.read.conforms
    title: A read returns the counter
    cite: {page: eventfd(2), section: "DESCRIPTION, read(2)", quote: "a read(2) returns 8 bytes containing that value"}
    params:
      initval: {integers: {min: 1, max: 100}}
    steps:
      - eventfd: {initval: $initval, flags: EFD_NONBLOCK}
        as: efd
      - read_u64: {fd: $efd}
        expect: {value: $initval}
  - id: demo.read.wrong
    title: A deliberately wrong expectation
    cite: {page: eventfd(2), section: "DESCRIPTION, read(2)", quote: "the counter's value is reset to zero"}
    params:
      initval: {integers: {min: 1, max: 100}}
    steps:
      - eventfd: {initval: $initval, flags: EFD_NONBLOCK}
        as: efd
      - read_u64: {fd: $efd}
        expect: {value: {add: [$initval, 1]}}
  - id: demo.gone.na
    title: Only on ancient kernels
    cite: {page: eventfd(2), section: VERSIONS, quote: "eventfd() is available since Linux 2.6.22"}
    applies: {kernel: "<2.6.22"}
    steps:
      - eventfd: {initval: 0}
"""
OTHER = """
family: other
behaviours:
  - id: other.fdlink
    title: The fd link names the eventfd
    cite: {page: eventfd(2), section: NOTES, quote: "/proc/pid/fdinfo"}
    steps:
      - eventfd: {initval: 0}
        as: efd
      - fd_link: {fd: $efd}
        expect: {value: "anon_inode:[eventfd]"}
"""


@pytest.fixture(scope="module")
def chromium():
    if chromium_path() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: ./bootstrap --dev should have installed it")
        pytest.skip("chromium is not installed (./bootstrap --dev as root installs it)")
    from kit.report.browser import browser

    with browser() as instance:
        yield instance


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("html")
    for name, text in (("demo", SPECS), ("other", OTHER)):
        (root / "specs" / name).mkdir(parents=True)
        (root / "specs" / name / f"{name}.yaml").write_text(text)
    out = root / "report"
    subprocess.run([sys.executable, "-m", "pytest", "-p", "kit.plugin", str(root / "specs"),
                    "-q", "-p", "no:cacheprovider", "--rootdir", str(root),
                    "--kit-report", str(out)], cwd=root, capture_output=True, timeout=120)
    single = json.loads((out / "report.json").read_text())
    # A second target, as a matrix run would merge it: the same run where the wrong
    # expectation happened to conform, so exactly one row differs.
    other = copy.deepcopy(single)
    other["target"]["name"] = "second target"
    for b in other["behaviours"]:
        if b["id"] == "demo.read.wrong":
            b.update(status="conforms", trace=[], counterexample=None, replay="", message="")
    write_html(out / "matrix.html", [single, other])
    return out


@pytest.fixture
def page(chromium, report):
    context = chromium.new_context()
    page = context.new_page()
    page.errors = []
    page.requests = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("request", lambda r: page.requests.append(r.url))
    yield page
    context.close()


def visible_ids(page) -> list[str]:
    return page.eval_on_selector_all("tr.behaviour:not([hidden])",
                                     "rows => rows.map(r => r.dataset.id)")


def test_loads_without_console_errors_or_network(page, report):
    page.goto((report / "report.html").as_uri())
    assert page.title() == "Syscall conformance report"
    assert page.errors == []
    assert all(url.startswith("file:") for url in page.requests), page.requests
    html = (report / "report.html").read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html), "the report must be self-contained"


def test_summary_shows_conformance_and_chart(page, report):
    page.goto((report / "report.html").as_uri())
    card = page.inner_text(".card")
    assert "66.7%" in card  # two of the three checked behaviours conform
    assert page.locator("#chart rect").count() >= 2


def test_filters_by_family_status_and_text(page, report):
    page.goto((report / "report.html").as_uri())
    assert len(visible_ids(page)) == 4
    page.select_option("#f-family", "other")
    assert visible_ids(page) == ["other.fdlink"]
    page.select_option("#f-family", "")
    page.select_option("#f-status", "deviates")
    assert visible_ids(page) == ["demo.read.wrong"]
    page.select_option("#f-status", "not applicable")
    assert visible_ids(page) == ["demo.gone.na"]
    page.select_option("#f-status", "")
    page.fill("#f-text", "reset to zero")  # searches the cited quote too
    assert visible_ids(page) == ["demo.read.wrong"]
    assert page.inner_text("#shown") == "1"


def test_a_deviation_opens_with_citation_trace_and_replay(page, report):
    page.goto((report / "report.html").as_uri())
    detail = page.locator("#detail-demo\\.read\\.wrong")
    assert detail.is_hidden()
    page.click("#row-demo\\.read\\.wrong")
    assert detail.is_visible()
    text = detail.inner_text()
    assert "the counter's value is reset to zero" in text
    assert "expected value" in text and "FAIL" in text
    assert "kit replay demo.read.wrong --params" in text
    assert '"initval": 1' in detail.locator(".counterexample").inner_text()


def test_matrix_toggle_shows_only_rows_where_targets_differ(page, report):
    page.goto((report / "matrix.html").as_uri())
    # behaviour, title, two targets (under their group label)
    assert page.locator("#matrix thead tr.targets th").count() == 4
    page.check("#f-differs")
    assert visible_ids(page) == ["demo.read.wrong"]
    page.uncheck("#f-differs")
    assert len(visible_ids(page)) == 4
    assert page.errors == []


def test_a_partial_run_shows_a_banner_and_a_complete_one_none(page, report, tmp_path):
    page.goto((report / "report.html").as_uri())
    assert page.locator(".partial-banner").count() == 0
    partial = json.loads((report / "report.json").read_text())
    partial.update(partial=True, partial_reason="interrupted (Ctrl-C)", not_run=7,
                   not_run_ids=[])
    write_html(tmp_path / "partial.html", [partial])
    page.goto((tmp_path / "partial.html").as_uri())
    banner = page.locator(".partial-banner")
    assert banner.is_visible()
    assert banner.inner_text() == ("Partial run: interrupted (Ctrl-C); 7 selected "
                                   "behaviour(s) were not run, so this report is incomplete.")
    assert page.errors == []
