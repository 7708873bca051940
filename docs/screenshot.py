"""Regenerate docs/report.png: a screenshot of the HTML report with a deviation open.

    .venv/bin/python docs/screenshot.py [report/report.html]
    .venv/bin/python docs/screenshot.py --matrix report-matrix/report.html

Without an argument it builds a small demonstration report (one deliberate deviation)
in a temporary directory, so the picture always shows what a failure looks like.
With --matrix it writes docs/report-matrix.png: the first screen (1280x800) of a merged
matrix page, where the targets that deviate most are.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from kit.report.browser import browser

HERE = Path(__file__).resolve().parent
DEMO = """
family: demo
behaviours:
  - id: demo.write.u64max_accepted
    title: "Demonstration: a spec that expects the wrong answer, to show a deviation"
    cite: {page: eventfd(2), section: "DESCRIPTION, write(2)", quote: "A write(2) fails with the error EINVAL if ... an attempt is made to write the value 0xffffffffffffffff."}
    params:
      initval: {integers: {min: 0, max: 10}}
    steps:
      - eventfd: {initval: $initval, flags: EFD_NONBLOCK}
        as: efd
      - write_u64: {fd: $efd, value: 0xffffffffffffffff}
        expect: {returns: 8}
"""


def demo_report(root: Path) -> Path:
    (root / "specs" / "demo").mkdir(parents=True)
    (root / "specs" / "demo" / "demo.yaml").write_text(DEMO)
    specs = [str(root / "specs"), str(HERE.parent / "specs" / "eventfd")]
    subprocess.run([sys.executable, "-m", "pytest", "-p", "kit.plugin", *specs, "-q",
                    "-p", "no:cacheprovider", "--rootdir", str(root), "--kit-report",
                    str(root / "report")], cwd=root, capture_output=True, timeout=600)
    return root / "report" / "report.html"


def matrix_shot(html: Path) -> Path:
    out = HERE / "report-matrix.png"
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.goto(html.resolve().as_uri())
        page.screenshot(path=str(out), full_page=False)
    return out


def main() -> None:
    if sys.argv[1:2] == ["--matrix"]:
        print(f"wrote {matrix_shot(Path(sys.argv[2]))}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        html = Path(sys.argv[1]) if len(sys.argv) > 1 else demo_report(Path(tmp))
        with browser() as chromium:
            page = chromium.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(html.resolve().as_uri())
            page.select_option("#f-status", "deviates")
            first = page.locator("tr.behaviour:not([hidden])").first
            if first.count():
                first.click()
            page.screenshot(path=str(HERE / "report.png"), full_page=False)
    print(f"wrote {HERE / 'report.png'}")


if __name__ == "__main__":
    main()
