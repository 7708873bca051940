"""The guest's Python image (kit/matrix/qemu_image.py): built from small trees standing in
for the interpreter's library, stdlib and venv, with the real mke2fs, read back with
debugfs; rebuilt when what goes in changes, reused when not, rebuilt when damaged."""

from __future__ import annotations

import marshal
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kit.matrix import qemu_image as qi
from kit.matrix.qemu_initramfs import IMAGE_BINDS

pytestmark = pytest.mark.skipif(
    not (shutil.which("mke2fs") or Path("/sbin/mke2fs").exists())
    or not shutil.which("debugfs"), reason="needs e2fsprogs (mke2fs, debugfs, e2fsck)")


@pytest.fixture
def trees(tmp_path, monkeypatch):
    """A fake interpreter: libpython, a stdlib with a test suite, a venv with two packages."""
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "cache"))
    base = tmp_path / "python"
    (base / "lib/python3.11/test").mkdir(parents=True)
    (base / "lib/libpython3.11.so.1.0").write_bytes(b"\x7fELF fake library")
    (base / "lib/python3.11/os_like.py").write_text("VALUE = 1\n")
    (base / "lib/python3.11/test/test_big.py").write_text("# never read by kit run\n")
    site = tmp_path / "venv/lib/python3.11/site-packages"
    (site / "hypothesis_like").mkdir(parents=True)
    (site / "hypothesis_like/__init__.py").write_text("def given():\n    return 2\n")
    (site / "playwright/driver").mkdir(parents=True)
    (site / "playwright/driver/node").write_bytes(b"big")
    paths = {"stdlib": str(base / "lib/python3.11"), "site": [str(site)],
             "libpython": str(base / "lib/libpython3.11.so.1.0"), "version": "3.11"}
    monkeypatch.setattr(qi, "python_paths", lambda python: paths)
    return tmp_path


def debugfs(image: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, str(image)], capture_output=True,
                          timeout=60, check=False).stdout.decode("latin-1")


def test_the_image_holds_the_trees_at_their_host_paths_byte_compiled(trees):
    image = qi.ensure_image("python")
    assert image.built and image.path.exists()
    stdlib, site = trees / "python/lib/python3.11", trees / "venv/lib/python3.11/site-packages"
    assert image.binds == [str(trees / "python/lib/libpython3.11.so.1.0"), str(stdlib),
                           str(site)]
    assert debugfs(image.path, f"cat /{IMAGE_BINDS}").splitlines() == image.binds
    inside = f"/{qi.ROOT}{site}/hypothesis_like"
    assert "__init__.py" in debugfs(image.path, f"ls {inside}")
    # compiled for the host's path, so tracebacks in the guest name the host's files
    pyc = debugfs(image.path, f"ls {inside}/__pycache__")
    assert "__init__.cpython-" in pyc
    name = next(w for w in pyc.split() if w.startswith("__init__.cpython-"))
    data = subprocess.run(["debugfs", "-R", f"cat {inside}/__pycache__/{name}",
                           str(image.path)], capture_output=True, timeout=60,
                          check=False).stdout
    assert marshal.loads(data[16:]).co_filename == str(site / "hypothesis_like/__init__.py")
    # what kit run never reads stays out: the stdlib's tests, playwright's browser driver
    assert "test_big" not in debugfs(image.path, f"ls /{qi.ROOT}{stdlib}")
    assert "playwright" not in debugfs(image.path, f"ls /{qi.ROOT}{site}")
    assert "os_like.py" in debugfs(image.path, f"ls /{qi.ROOT}{stdlib}")


def test_an_unchanged_environment_reuses_the_image_a_changed_one_makes_a_new(trees):
    first = qi.ensure_image("python")
    again = qi.ensure_image("python")
    assert not again.built and again.path == first.path
    module = trees / "venv/lib/python3.11/site-packages/hypothesis_like/__init__.py"
    module.write_text("def given():\n    return 3\n")      # a pip install, a new kit wheel
    os.utime(module, (time.time() + 5, time.time() + 5))
    changed = qi.ensure_image("python")
    assert changed.built and changed.path != first.path
    # writing a .pyc on the host (any import there) is no change of the environment
    (module.parent / "__pycache__").mkdir(exist_ok=True)
    (module.parent / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"...")
    assert not qi.ensure_image("python").built


def test_a_damaged_image_is_found_and_built_again(trees):
    image = qi.ensure_image("python")
    with open(image.path, "r+b") as f:        # the superblock, overwritten
        f.seek(1024)
        f.write(b"\0" * 1024)
    problem = qi.check_image(image.path, image.path.with_suffix(".json"))
    assert problem and "damaged" in problem
    rebuilt = qi.ensure_image("python")
    assert rebuilt.built and rebuilt.path == image.path
    assert qi.check_image(rebuilt.path, rebuilt.path.with_suffix(".json")) is None
    # cut short (a full disk while copying it): its size gives it away
    with open(image.path, "r+b") as f:
        f.truncate(image.size // 2)
    assert "bytes" in qi.check_image(image.path, image.path.with_suffix(".json"))
    assert qi.ensure_image("python").built


def test_an_image_that_cannot_be_built_is_a_kit_error(trees, monkeypatch):
    real_run = subprocess.run

    def failing_mke2fs(cmd, *args, **kwargs):
        if "mke2fs" in str(cmd[0]):
            return subprocess.CompletedProcess(cmd, 1, "", "mke2fs: No space left on device")
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(qi.subprocess, "run", failing_mke2fs)
    with pytest.raises(qi.ImageError, match="mke2fs failed: mke2fs: No space left"):
        qi.ensure_image("python")
    assert not list(qi.images_dir().glob("*.json"))      # nothing half-built is kept


def test_only_the_latest_images_are_kept(trees):
    module = trees / "python/lib/python3.11/os_like.py"
    built = []
    for i in range(qi.KEEP + 2):
        module.write_text(f"VALUE = {i}\n" + "#" * i)
        built.append(qi.ensure_image("python").path)
        past = time.time() - 100 + i              # used in this order, the last just now
        os.utime(built[-1].with_suffix(".json"), (past, past))
    kept = sorted(qi.images_dir().glob("python-*.img"))
    assert kept == sorted(built[-qi.KEEP:])
