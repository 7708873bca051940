"""The merged report at matrix size: ten targets (tests/matrix_fixture.py, derived from a
real run), merged with `kit report --merge` as a user would, read in a real browser at
1280x800. The first screen shows the most deviating targets, grouped and labelled; "where
targets differ" comes before the long list; both tables keep their target names in view
while the page scrolls down and their behaviour ids while it scrolls sideways. matrix.md
lists the targets in the same groups and order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import READS_COUNTER, READS_COUNTER_WRONG, behaviour, run_kit, run_plugin, \
    spec_text, write_spec
from matrix_fixture import GROUPS, TARGETS, WORST, ten_reports, write_reports
from test_html_report import chromium  # noqa: F401 - the shared browser fixture

from kit.matrix.base import RunResult, Target
from kit.matrix.runner import write_matrix
from kit.report.html import render_html
from kit.report.ranking import rank_reports, target_group

VIEWPORT = {"width": 1280, "height": 800}


@pytest.fixture(scope="module")
def base_report(tmp_path_factory) -> dict:
    """A real report: one behaviour that conforms and one that deviates, with their traces."""
    root = tmp_path_factory.mktemp("real")
    write_spec(root, spec_text(behaviour("x.read.counter", READS_COUNTER),
                               behaviour("x.read.wrong", READS_COUNTER_WRONG)))
    ran = run_plugin(root, "-n", "0")
    statuses = ran.statuses()
    assert statuses == {"x.read.counter": "conforms", "x.read.wrong": "deviates"}, ran.output
    return ran.report


@pytest.fixture(scope="module")
def merged(base_report, tmp_path_factory) -> Path:
    """`kit report --merge` of the ten targets' report directories."""
    root = tmp_path_factory.mktemp("matrix")
    sources = write_reports(base_report, root / "targets")
    ran = run_kit(root, "report", "--merge", *map(str, sources), "-o", str(root / "merged"))
    assert ran.ret == 0, ran.output
    return root / "merged" / "report.html"


@pytest.fixture
def page(chromium, merged):  # noqa: F811
    context = chromium.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.errors, page.requests = [], []
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("request", lambda r: page.requests.append(r.url))
    page.goto(merged.as_uri())
    yield page
    assert page.errors == []
    assert all(url.startswith("file:") for url in page.requests), page.requests
    context.close()


def css_id(text: str) -> str:
    return text.replace(".", "\\.")


def box(page, selector: str) -> dict:
    """The element's box in viewport coordinates."""
    return page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect(); "
                                           "return {x: r.x, y: r.y, w: r.width, h: r.height}; }")


def scroll_to(page, x: float, y: float) -> None:
    page.evaluate("([x, y]) => window.scrollTo(x, y)", [x, y])
    page.wait_for_function("([x, y]) => Math.abs(window.scrollY - y) < 2 "
                           "&& Math.abs(window.scrollX - x) < 2", arg=[x, y], timeout=5000)


def on_top(page, x: float, y: float, selector: str) -> bool:
    """Whether what the user sees at viewport point (x, y) is inside SELECTOR (not covered)."""
    return page.evaluate("([x, y, sel]) => !!document.elementFromPoint(x, y)?.closest(sel)",
                         [x, y, selector])


def test_the_worst_target_is_on_the_first_screen(page):
    card = box(page, f'.rank-card[data-target="{WORST}"]')
    assert card["y"] >= 0 and card["y"] + card["h"] <= VIEWPORT["height"], card
    assert card["x"] + card["w"] <= VIEWPORT["width"], card
    text = page.inner_text(f'.rank-card[data-target="{WORST}"]')
    assert "2 new" in text and "87 known" in text and "3 timeouts" in text, text
    # every target's card is on the first screen, not only the worst
    for name, *_ in TARGETS:
        card = box(page, f'.rank-card[data-target="{name}"]')
        assert card["y"] + card["h"] <= VIEWPORT["height"], (name, card)


def test_cards_are_grouped_labelled_and_worst_first(page):
    labels = page.eval_on_selector_all("section.group > h3.group-label",
                                       "hs => hs.map(h => h.firstChild.textContent.trim())")
    assert labels == list(GROUPS)
    for label, names in GROUPS.items():
        section = page.locator("section.group", has_text=label)
        shown = section.locator(".rank-card").evaluate_all(
            "cards => cards.map(c => c.dataset.target)")
        assert shown == names, label
    # the table's columns follow the same order, under the same group labels
    columns = page.eval_on_selector_all("#matrix thead tr.targets th",
                                        "ths => ths.slice(2).map(t => t.textContent)")
    assert columns == [n for names in GROUPS.values() for n in names]
    spans = page.eval_on_selector_all(
        "#matrix thead th.group", "ths => ths.map(t => [t.textContent, t.colSpan])")
    assert spans == [[label, len(names)] for label, names in GROUPS.items()]


def test_a_card_leads_to_the_targets_details(page):
    page.click(f'.rank-card[data-target="{WORST}"]')
    detail = page.locator(f'#target-{WORST}')
    assert detail.is_visible()
    text = detail.inner_text()
    assert "synthetic gvisor target" in text    # how it was run
    assert "x86_64, glibc" in text                # its ABI and libc (the header lists names only)


def test_where_targets_differ_comes_before_the_long_list(page):
    differ, matrix = box(page, "#differences"), box(page, "#matrix")
    assert differ["y"] + differ["h"] <= matrix["y"]
    # the heading is in reach from the first screen: right below the cards
    heading = box(page, "#where-targets-differ")
    assert heading["y"] < 2 * VIEWPORT["height"], heading
    # a behaviour id in it opens that behaviour in the long list
    first = page.locator("#differences tbody tr a").first
    bid = first.inner_text()
    first.click()
    assert page.locator(f"#detail-{css_id(bid)}").is_visible()


@pytest.mark.parametrize("table", ["matrix", "differences"])
def test_the_target_names_stay_visible_while_scrolling(page, table):
    top = page.evaluate(f"document.getElementById('{table}').getBoundingClientRect().top "
                        "+ window.scrollY")
    height = box(page, f"#{table}")["h"]
    down = min(5000, height - VIEWPORT["height"])
    assert down > 1000, f"the {table} table is too short to test scrolling ({height}px)"
    scroll_to(page, 0, top + down)
    header = box(page, f"#{table} thead tr.targets")
    floor = box(page, ".filters")["h"] if table == "matrix" else 0
    assert floor - 1 <= header["y"] <= floor + 40, (header, floor)
    # and nothing covers it: the target names are what the user sees there
    for name in (next(iter(GROUPS.values()))[0], WORST):   # columns within the viewport
        cell = page.locator(f"#{table} thead tr.targets th", has_text=name).first
        b = cell.bounding_box()
        assert on_top(page, b["x"] + b["width"] / 2, b["y"] + b["height"] / 2,
                      f"#{table} thead"), name


def test_the_behaviour_id_stays_visible_when_the_table_scrolls_sideways(page):
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width > VIEWPORT["width"], "ten columns should not fit 1280 pixels"
    top = page.evaluate("document.getElementById('matrix').getBoundingClientRect().top "
                        "+ window.scrollY")
    scroll_to(page, width - VIEWPORT["width"], top + 2000)
    # what the user sees at the left edge, mid-screen, is a behaviour id, at the edge
    seen = page.evaluate("() => { const td = document.elementFromPoint(10, 400)"
                         "?.closest('#matrix td.first'); if (!td) return null; "
                         "return [td.textContent.trim(), td.getBoundingClientRect().x]; }")
    assert seen is not None, "the behaviour id scrolled away with the columns"
    assert seen[0].startswith(("epoll.", "eventfd.", "signalfd.", "timerfd.")), seen
    assert seen[1] == pytest.approx(0, abs=1), seen
    header = box(page, "#matrix thead th.first")
    assert header["x"] == pytest.approx(0, abs=1), header


def test_one_target_keeps_the_single_run_page(base_report, tmp_path):
    html = render_html([base_report])
    assert 'class="rank-card' not in html and "<h2>Targets</h2>" not in html
    assert 'class="groups"' not in html and "Where targets differ" not in html
    assert html.count('class="card target-card"') == 1


def test_the_group_comes_from_kind_and_platform():
    assert target_group({"platform": "linux"}) == "kernel"          # a plain `kit run`
    assert target_group({"kind": "qemu", "platform": "qemu"}) == "kernel"
    assert target_group({"kind": "gvisor", "platform": "gvisor"}) == "implementation"
    assert target_group({"kind": "userland", "platform": "qemu-user"}) == "implementation"
    assert target_group({"kind": "userland", "platform": "userland"}) == "userland"
    assert target_group({"kind": "container", "platform": "container"}) == "userland"


def test_ranking_puts_new_deviations_before_known_ones_before_timeouts(base_report):
    ranked = [r["target"]["name"] for r in rank_reports(ten_reports(base_report))]
    assert ranked == [n for names in GROUPS.values() for n in names]


class FakeTarget(Target):
    def __init__(self, name: str, kind: str, platform: str):
        super().__init__(name, {"platform": platform})
        self.kind = kind


def test_matrix_md_has_the_same_groups_and_order(base_report, tmp_path):
    """kit matrix's own merge: matrix.md and matrix.json, with a target that did not run."""
    targets, results = [], []
    for report in ten_reports(base_report):
        t = report["target"]
        path = tmp_path / t["name"] / "report.json"
        path.parent.mkdir()
        path.write_text(json.dumps(report))
        targets.append(FakeTarget(t["name"], t["kind"], t["platform"]))
        results.append(RunResult(t["name"], "ran", report=path, exit_code=1))
    targets.append(FakeTarget("debian-riscv64", "userland", "qemu-user"))
    results.append(RunResult("debian-riscv64", "skipped", "no qemu-riscv64 here"))
    matrix = write_matrix(tmp_path, targets, results)
    md = (tmp_path / "matrix.md").read_text()
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert headings == [*GROUPS, "Where targets differ"]
    rows = [line.split(" | ")[0].strip("| ") for line in md.splitlines()
            if line.startswith("| ") and not line.startswith("| target")]
    expected = [n for names in GROUPS.values() for n in names]
    expected.insert(expected.index("debian-arm64") + 1, "debian-riscv64")  # did not run: last
    assert rows == expected, md
    assert "| gvisor | ran | " in md and md.split("| gvisor | ran | ")[1].split("\n")[0] \
        .endswith("| 2 | 87 | 3 |")
    assert "| debian-riscv64 | skipped: no qemu-riscv64 here |" in md
    # each difference names the targets in that same order
    line = next(ln for ln in md.splitlines() if ln.startswith("- `"))
    named = [part.split(":")[0].strip() for part in line.split("`: ")[1].split(", ")]
    assert named == [n for n in expected if n in named], line
    # matrix.json says what the groups and the order were made of
    entry = next(t for t in matrix["targets"] if t["name"] == WORST)
    assert entry["metadata"]["kind"] == "gvisor" and entry["target"]["kind"] == "gvisor"
    assert entry["deviations"] == {"new": 2, "known": 87, "timeouts": 3, "errors": 0}
    skipped = next(t for t in matrix["targets"] if t["name"] == "debian-riscv64")
    assert skipped["metadata"] == {"kind": "userland", "platform": "qemu-user"}
    assert skipped["deviations"] is None
