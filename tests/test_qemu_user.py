"""The arm64 and s390x userlands under qemu-user: the target files, binfmt_misc handled as the
kit promises (a registration of its own for the run, the machine left as found), and, where
a userland is cached and binfmt_misc works, the tables and byte order checked inside it.

The tests that enter a userland need root, qemu-user-static, binfmt_misc and the userland
built (`kit matrix --only debian-arm64` builds and caches it); they are skipped with the
reason otherwise."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kit.adapter import arch
from kit.matrix import binfmt, userland
from kit.matrix.targets import load_target

REPO = Path(__file__).resolve().parent.parent
TARGETS = {"debian-arm64": ("aarch64", "arm64"), "debian-s390x": ("s390x", "s390x")}


# -- the target files ---------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_target_file_loads_as_a_qemu_user_userland(name):
    target = load_target(REPO / "targets" / f"{name}.yaml")
    assert isinstance(target, userland.UserlandTarget)
    assert target.name == name and target.architecture == TARGETS[name][1]
    assert target.spec["platform"] == "qemu-user"
    assert target.spec["timeout"] >= 3600


@pytest.mark.timeout(600)   # --list asks apt whether every kernel package can be fetched
def test_matrix_list_shows_both_targets_or_why_they_are_skipped():
    proc = subprocess.run([sys.executable, "-m", "kit", "matrix", "--list"], cwd=REPO,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    for name in TARGETS:
        line = next(line for line in proc.stdout.splitlines() if line.split()[0] == name)
        assert re.search(r"userland\s+(available|skipped: .+)", line), line


def test_without_qemu_user_static_the_target_is_skipped_naming_the_package(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(binfmt, "CONFIG", tmp_path)          # no qemu-*.conf there
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(userland.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    target = load_target(REPO / "targets" / "debian-arm64.yaml")
    if os.uname().machine == "aarch64":
        pytest.skip("arm64 runs natively here")
    assert target.unavailable() == (
        f"a arm64 userland runs under qemu-user here: {tmp_path}/qemu-aarch64.conf is "
        f"missing (Debian package: qemu-user-static)")


def test_the_kits_registration_is_qemus_own_line_with_the_f_flag(tmp_path, monkeypatch):
    interpreter = tmp_path / "qemu-fake-static"
    interpreter.write_text("")
    (tmp_path / "qemu-fake.conf").write_text(
        f"# comment\n:qemu-fake:M::\\x7fELF\\x02:\\xff\\xff\\xff\\xff\\xff:{interpreter}:OP\n")
    monkeypatch.setattr(binfmt, "CONFIG", tmp_path)
    assert binfmt.kit_line("fake") == \
        f":kit-qemu-fake:M::\\x7fELF\\x02:\\xff\\xff\\xff\\xff\\xff:{interpreter}:FOP"


def test_a_malformed_registration_line_is_refused(tmp_path, monkeypatch):
    (tmp_path / "qemu-fake.conf").write_text(":qemu-fake:M::x\n")
    monkeypatch.setattr(binfmt, "CONFIG", tmp_path)
    with pytest.raises(binfmt.BinfmtError, match="not a binfmt_misc registration"):
        binfmt.kit_line("fake")


def _binfmt_usable() -> str | None:
    if os.geteuid() != 0:
        return "registering with binfmt_misc needs root"
    if "binfmt_misc" not in Path("/proc/filesystems").read_text():
        return "this kernel has no binfmt_misc"
    return None


@pytest.mark.skipif(_binfmt_usable() is not None, reason=str(_binfmt_usable()))
def test_a_registration_lives_for_the_block_and_the_machine_is_left_as_found(tmp_path,
                                                                            monkeypatch):
    """A format no file matches (magic 'KITTEST!' at offset 0), so nothing else on the
    machine is disturbed while it exists."""
    (tmp_path / "qemu-kittest.conf").write_text(
        ":qemu-kittest:M::KITTEST!::/bin/true:\n")
    monkeypatch.setattr(binfmt, "CONFIG", tmp_path)
    was_mounted = binfmt.mounted()
    with binfmt.registered("kittest"):
        entry = binfmt.BINFMT / "kit-qemu-kittest"
        assert entry.read_text().splitlines()[0] == "enabled"
        assert "flags: F" in entry.read_text()
        with binfmt.registered("kittest"):       # a second target of the same architecture
            pass
        assert entry.exists()                    # still needed by the first
    assert binfmt.mounted() == was_mounted
    assert not (binfmt.BINFMT / "kit-qemu-kittest").exists()


@pytest.mark.skipif(_binfmt_usable() is not None, reason=str(_binfmt_usable()))
def test_another_kit_process_using_the_registration_keeps_it(tmp_path, monkeypatch):
    """Two kit processes with qemu-user targets at once: the one that finishes first must
    not remove the entry the other still runs under."""
    (tmp_path / "qemu-kittest.conf").write_text(
        ":qemu-kittest:M::KITTEST!::/bin/true:\n")
    monkeypatch.setattr(binfmt, "CONFIG", tmp_path)
    entry = binfmt.BINFMT / "kit-qemu-kittest"
    other = None
    try:
        with binfmt.registered("kittest"):       # this process registers it first
            other = subprocess.Popen(
                [sys.executable, "-c", "import sys\nfrom pathlib import Path\n"
                 "from kit.matrix import binfmt\nbinfmt.CONFIG = Path(sys.argv[1])\n"
                 "with binfmt.registered('kittest'):\n    print('in', flush=True)\n"
                 "    sys.stdin.readline()\n", str(tmp_path)],
                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert other.stdout.readline() == "in\n"
        assert entry.exists()                    # the other process still runs under it
        other.stdin.write("\n")
        other.stdin.flush()
        assert other.wait(timeout=60) == 0
    finally:
        if other is not None and other.poll() is None:
            other.kill()
            other.wait()
    assert not entry.exists()                    # the last one out removed it


# -- inside a cached userland -------------------------------------------------------------

def _usable_userland(name: str) -> userland.UserlandTarget:
    target = load_target(REPO / "targets" / f"{name}.yaml")
    reason = target.unavailable()
    if reason:
        pytest.skip(f"{name}: {reason}")
    if not (target.directory() / ".complete").exists():
        pytest.skip(f"{name} is not built here yet (`kit matrix --only {name}` builds and "
                    f"caches it in {target.directory()})")
    return target


def _inside(target: userland.UserlandTarget, code: str, **env: str) -> subprocess.CompletedProcess:
    """The userland's own python3 running `code`, chrooted, under qemu-user."""
    rootfs = target.directory() / "rootfs"
    with target.emulation():
        return subprocess.run(["chroot", str(rootfs), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin",
                               *(f"{k}={v}" for k, v in env.items()), "/usr/bin/python3", "-c",
                               code], capture_output=True, text=True, timeout=300, check=False,
                              env=userland._clean_env())


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_qemu_decodes_every_number_of_the_table_as_the_call_it_names(name):
    """qemu's own syscall table (QEMU_STRACE) names each number the kit's table gives: a
    wrong number shows up as another call. Every argument is -1, so each call fails at
    once (eventfd(-1) makes a descriptor, gone when the process exits). A number qemu does
    not implement is logged as "Unknown syscall N" and cannot be checked this way."""
    target = _usable_userland(name)
    abi = TARGETS[name][0]
    table = arch.SYSCALLS[abi]
    code = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            f"for n in {sorted(table.values())}:\n"
            "    libc.syscall(ctypes.c_long(n), *[ctypes.c_long(-1)] * 6)\n")
    ran = _inside(target, code, QEMU_STRACE="1")
    assert ran.returncode == 0, ran.stderr[-2000:]
    log = ran.stdout + ran.stderr
    # -1 as qemu prints it: a number, or a pointer (futex's address)
    called = set(re.findall(r"^\d+ (\w+)\((?:-1|0x0*f{8,16})\b", log, re.MULTILINE))
    unknown = {int(n) for n in re.findall(r"Unknown syscall (\d+)", log)}
    unchecked = sorted(n for n, number in table.items() if number in unknown)
    wrong = sorted(f"{n} ({number})" for n, number in table.items()
                   if number not in unknown and n not in called)
    assert not wrong, f"qemu did not see these calls at their numbers: {wrong}; saw {called}"
    # what qemu 7.2 lacks; a newer qemu checks them too
    assert set(unchecked) <= {"epoll_pwait2", "openat2", "io_setup", "io_destroy",
                              "io_submit", "io_getevents", "kcmp"}, unchecked


def test_s390x_reads_the_eventfd_counter_big_endian_through_the_kits_format():
    """On s390x the 8 bytes of an eventfd read are the counter most significant byte first,
    and the adapter's format (native order) decodes them as the counter."""
    target = _usable_userland("debian-s390x")
    code = ("import os, sys\nfrom kit.adapter import fds\n"
            "fd = os.eventfd(0)\nos.eventfd_write(fd, 0x0102030405060708)\nraw = os.read(fd, 8)\n"
            "print(sys.byteorder, raw.hex(), hex(fds._U64.unpack(raw)[0]))\n")
    rootfs = target.directory() / "rootfs"
    with target.emulation():
        ran = subprocess.run(["chroot", str(rootfs), userland.VENV + "/bin/python", "-c", code],
                             capture_output=True, text=True, timeout=300, check=False,
                             env=userland._clean_env())
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.split() == ["big", "0102030405060708", "0x102030405060708"]


# eventfd2 works under qemu-user; the legacy eventfd and epoll_create calls aarch64 lacks
SOME_BEHAVIOURS = ("eventfd.create.eventfd2.nonblock or eventfd.create.legacy or "
                   "epoll.create.size_ignored")


def test_a_few_behaviours_run_in_the_arm64_userland(tmp_path):
    """`kit matrix --only debian-arm64` on a few behaviours: the report says where it ran
    (aarch64, platform qemu-user, the host kernel's version) and what qemu-user did."""
    _usable_userland("debian-arm64")
    out = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-m", "kit", "matrix", "--only", "debian-arm64",
                           "-o", str(out), "-k", SOME_BEHAVIOURS],
                          cwd=REPO, capture_output=True, text=True, timeout=3000, check=False)
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "debian-arm64" / "report.json").read_text())
    assert report["target"]["arch"] == "aarch64"
    assert report["target"]["platform"] == "qemu-user"
    assert report["target"]["release"] == os.uname().release
    statuses = {b["id"]: b["status"] for b in report["behaviours"]}
    # aarch64 has no legacy eventfd: not applicable, with that reason, never a deviation
    legacy = [b for b in report["behaviours"] if b["id"].startswith("eventfd.create.legacy")]
    assert legacy and all(b["status"] == "not applicable" for b in legacy), legacy
    assert any("aarch64 has no eventfd system call" in json.dumps(b) for b in legacy)
    assert statuses and "deviates" not in statuses.values(), statuses
    matrix = json.loads((out / "matrix.json").read_text())
    assert "qemu-user" in matrix["targets"][0]["metadata"]["how"]
