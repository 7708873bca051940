"""Userland targets: Debian root filesystems built here, entered with chroot in fresh
namespaces. The build and the run need root, mmdebstrap and minutes: KIT_USERLAND_TESTS=1
runs that end to end; the rest needs neither."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from kit.adapter import arch
from kit.matrix import userland
from kit.matrix.base import RunRequest
from kit.matrix.targets import load_target


def test_pyyaml_comes_from_debian_and_the_rest_from_pypi():
    wanted = userland.kit_requirements()
    names = {userland._requirement_name(r).lower() for r in wanted}
    assert "pyyaml" not in names and {"pytest", "hypothesis", "jsonschema"} <= names
    assert "python3-yaml" in userland.BASE_PACKAGES


@pytest.mark.parametrize("requirement, name", [
    ("pytest>=7.4", "pytest"), ("PyYAML (>=6.0)", "PyYAML"),
    ("foo[bar]>=1; python_version<'3.12'", "foo"), ("regex~=2023.0", "regex")])
def test_requirement_names(requirement, name):
    assert userland._requirement_name(requirement) == name


def test_an_unknown_architecture_is_skipped_with_the_known_ones():
    target = userland.UserlandTarget("u", {"architecture": "vax", "suite": "bookworm"})
    assert "'vax' has no table here (one of amd64, arm64, i386, s390x)" in \
        target.unavailable()


def test_the_cache_directory_follows_the_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE", str(tmp_path))
    a = userland.UserlandTarget("a", {"architecture": "i386"})
    b = userland.UserlandTarget("b", {"architecture": "i386", "packages": ["strace"]})
    assert a.directory() != b.directory()
    assert a.directory().parent == tmp_path / "userlands"


def test_the_run_enters_the_rootfs_in_fresh_namespaces_with_the_personality(tmp_path,
                                                                           monkeypatch):
    seen = {}
    target = userland.UserlandTarget("i", {"architecture": "i386"})
    monkeypatch.setattr(target, "run_command",
                        lambda request, cmd, metadata, **kw: seen.update(cmd=cmd, kw=kw))
    request = RunRequest(repo=tmp_path, out_dir=tmp_path / "out", kit_args=["-k", "x"],
                         timeout=60, log=tmp_path / "log", env={"KIT_TARGET_NAME": "i"})
    target.run(request)
    cmd = seen["cmd"]
    assert cmd[:7] == ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
                       "--kill-child"]
    script = cmd[-1]
    assert "mount -t proc proc" in script and f"mount --bind {tmp_path / 'out'}" in script
    assert "setarch i686 env -i" in script and "KIT_TARGET_NAME=i" in script
    assert "--report /out" in script and "-k x" in script
    assert "PIP_" not in " ".join(seen["kw"]["env"])     # nothing of the host's pip settings
    # `exclusive:` locks are the host's: a clock change inside waits for one outside
    from kit.engine.exclusive import lock_dir
    assert f"mount --bind {lock_dir()} " in script


def test_a_userland_target_file_loads(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: u32\nkind: userland\narchitecture: i386\nsuite: bookworm\n")
    assert isinstance(load_target(path), userland.UserlandTarget)


@pytest.mark.parametrize("machine, bits, abi", [
    ("x86_64", 64, "x86_64"), ("x86_64", 32, "i386"), ("i686", 32, "i386"),
    ("aarch64", 64, "aarch64"), ("arm64", 64, "aarch64"), ("s390x", 64, "s390x")])
def test_the_abi_is_the_interpreters(machine, bits, abi):
    assert arch._abi(machine, bits) == abi


def test_every_table_names_the_same_calls_where_the_architecture_has_them():
    x86 = set(arch.SYSCALLS["x86_64"])
    # i386 has every call x86_64 has (and the *_time64 twins) but the raw timer and prctl
    # calls of the kit's own machinery (it uses a watchdog thread and libc's prctl there);
    # aarch64 lacks the legacy ones; s390x has them all
    machinery = {"timer_create", "timer_settime", "timer_delete", "prctl"}
    assert x86 - machinery <= set(arch.SYSCALLS["i386"])
    assert x86 - set(arch.SYSCALLS["aarch64"]) == {"epoll_create", "epoll_wait", "eventfd",
                                                   "signalfd", "poll"}
    assert x86 == set(arch.SYSCALLS["s390x"])


@pytest.mark.skipif(os.environ.get("KIT_USERLAND_TESTS") != "1",
                    reason="builds a Debian i386 userland (minutes, root, network); set "
                           "KIT_USERLAND_TESTS=1 to run it")
def test_the_i386_userland_runs_the_kit_end_to_end(tmp_path):
    if shutil.which("mmdebstrap") is None or os.geteuid() != 0:
        pytest.skip("needs root and mmdebstrap")
    proc = subprocess.run([sys.executable, "-m", "kit", "matrix", "--only", "debian-i386",
                           "-o", str(tmp_path / "m"), "-k", "eventfd.create"],
                          capture_output=True, text=True, timeout=3600, check=False)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    report = (tmp_path / "m" / "debian-i386" / "report.json").read_text()
    assert '"i686"' in report or '"i386"' in report


def test_run_args_reach_kit_run_after_a_double_dash(tmp_path, monkeypatch):
    seen = {}
    target = userland.UserlandTarget("a", {"architecture": "i386",
                                           "run_args": ["--kit-limit", 400]})
    monkeypatch.setattr(target, "run_command",
                        lambda request, cmd, metadata, **kw: seen.update(cmd=cmd))
    target.run(RunRequest(repo=tmp_path, out_dir=tmp_path / "out", kit_args=["-k", "x"],
                          timeout=60, log=tmp_path / "log"))
    assert "-k x -- --kit-limit 400; " in seen["cmd"][-1] or \
        seen["cmd"][-1].endswith("-k x -- --kit-limit 400")


def test_a_build_never_deletes_through_a_mount_an_interrupted_one_left(tmp_path, monkeypatch):
    """mmdebstrap killed mid-setup can leave /proc, /sys or /dev mounted in the rootfs:
    the next build stops with the reason instead of deleting through them."""
    if os.geteuid() != 0:
        pytest.skip("mounting needs root")
    target = userland.UserlandTarget.__new__(userland.UserlandTarget)
    directory = tmp_path / "bookworm-x"
    (directory / "rootfs" / "proc").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(directory / "rootfs" / "proc")],
                   check=True)
    try:
        with pytest.raises(userland.UserlandError, match="left mounts under"):
            target._build(directory, None)
        assert (directory / "rootfs" / "proc").is_dir()
    finally:
        subprocess.run(["umount", str(directory / "rootfs" / "proc")], check=True)
