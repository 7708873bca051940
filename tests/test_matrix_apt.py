"""A target that names a Debian suite reads a private apt configuration, never the system's.

No test here needs the network: the failing archive is a file: URL that does not exist.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from kit.matrix import qemu as q
from kit.matrix.apt import AptError, PrivateApt, suite_problem
from kit.matrix.targets import TargetFileError, load_target

needs_apt = pytest.mark.skipif(shutil.which("apt-get") is None, reason="no apt-get here")


def test_the_configuration_lives_under_its_own_root(tmp_path):
    apt = PrivateApt("bullseye", tmp_path / "apt")
    assert "deb.debian.org/debian bullseye main" in apt.sources()
    assert "debian-security bullseye-security main" in apt.sources()
    assert "bullseye-security" not in PrivateApt("bullseye", tmp_path, security=False).sources()
    paths = [o.split("=", 1)[1] for o in apt.options() if o.startswith("Dir::")]
    assert paths and all(p.startswith(str(tmp_path / "apt")) for p in paths)


@pytest.mark.parametrize("suite", ["bullseye", "bookworm-backports", "trixie"])
def test_suite_names(suite):
    assert suite_problem(suite) is None


@pytest.mark.parametrize("suite", ["", "Bullseye", "../etc", "a b", 11, None])
def test_not_suite_names(suite):
    assert "not a Debian suite name" in suite_problem(suite)


def test_a_bad_suite_in_a_target_file_names_file_line_and_field(tmp_path):
    target = tmp_path / "t.yaml"
    target.write_text("name: old\nkind: qemu\npackage: linux-image-x\nsuite: ../etc\n")
    with pytest.raises(TargetFileError) as caught:
        load_target(target)
    assert str(caught.value).startswith(f"{target}:4: field suite: ")


@needs_apt
def test_an_archive_that_cannot_be_read_is_an_apt_error(tmp_path):
    apt = PrivateApt("bullseye", tmp_path / "apt", archive=f"file://{tmp_path}/none",
                     security=False)
    with pytest.raises(AptError, match="apt-get update for bullseye failed"):
        apt.update()
    assert apt.age() is None          # not marked fresh: the next run tries again


@needs_apt
def test_matrix_list_says_when_a_suites_kernel_cannot_be_fetched(tmp_path):
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "old.yaml").write_text(textwrap.dedent(f"""\
        name: old
        kind: qemu
        suite: bullseye
        archive: file://{tmp_path}/none
        security: false
        package: linux-image-5\\.10\\.0-[0-9]+-amd64-unsigned
        """))
    env = {"KIT_CACHE": str(tmp_path / "cache"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "kit", "matrix", "--list", "--targets",
                           str(targets)], capture_output=True, text=True, env=env, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    line = next(l for l in proc.stdout.splitlines() if l.startswith("old"))
    if "skipped: " in line and "cannot fetch" not in line:
        pytest.skip(f"the qemu target is unavailable here anyway: {line}")
    assert "skipped: cannot fetch: apt-get update for bullseye failed" in line


def test_a_target_without_a_suite_uses_the_systems_apt(tmp_path):
    assert q.QemuTarget("t", {"package": "p"}).private_apt is None
    apt = q.QemuTarget("t", {"package": "p", "suite": "bullseye"}).private_apt
    assert apt.suite == "bullseye" and apt.security
