"""The wheel carries the specs, their schema and the matrix's targets, so `kit run` works
from any directory after a plain `pip install` (not only beside a source checkout)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent


def build_wheel(out: Path) -> Path:
    # no build isolation: the venv's setuptools, so no index is needed
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip()[-200:]}")
    assert proc.returncode == 0, proc.stderr
    return next(out.glob("*.whl"))


def test_every_package_of_the_kit_is_listed_for_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "kit").rglob("__init__.py")}
    assert found <= listed, f"add to pyproject.toml's packages: {sorted(found - listed)}"


def test_the_wheel_carries_its_data_and_an_installed_kit_finds_it(tmp_path):
    # one test: two builds at once in one source tree (xdist workers) would collide
    wheel = build_wheel(tmp_path / "wheel")
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, pattern in (("specs", "**/*.yaml"), ("schema", "*.json"),
                            ("targets", "*.yaml"), ("sentences", "*.yaml")):
        for path in (ROOT / folder).glob(pattern):
            assert f"kit/data/{folder}/{path.relative_to(ROOT / folder)}" in names

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", "import kit, kit.cli, kit.coverage.compute as c; "
         "print(kit.__file__); print(kit.cli.default_specs()); print(c.default_data_dir())"], cwd=elsewhere, capture_output=True, text=True,
        env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"}, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    module, specs, sentences = proc.stdout.split()
    assert module.startswith(str(unpacked)), "the unpacked wheel was not the kit imported"
    assert specs == str(unpacked / "kit" / "data" / "specs")
    assert (Path(specs) / "eventfd" / "create.yaml").is_file()
    assert sentences == str(unpacked / "kit" / "data" / "sentences")
    assert (Path(sentences) / "eventfd.2.yaml").is_file()
