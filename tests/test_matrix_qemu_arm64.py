"""The arm64 kernel target (kit/matrix/qemu_arch.py and the qemu target's foreign guests),
without booting a VM: the command line, the initramfs's run script on a userland root, the
kernel Image, apt for another architecture, the busybox check, the reasons `--list` gives,
the run against a fake qemu-system-aarch64, and the userland's kit kept stable while a
run reads it. The one test that boots the real arm64 kernel is behind KIT_VM_TESTS=1.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from kit.matrix import qemu as q
from kit.matrix import qemu_arch as arch
from kit.matrix import qemu_initramfs as guest
from kit.matrix import qemu_kernel as kernels
from kit.matrix import userland as ul
from kit.matrix.base import RunRequest
from kit.matrix.targets import load_target, target_env

REPO = Path(__file__).resolve().parent.parent
TARGET_FILE = REPO / "targets" / "debian-arm64-6.1.yaml"
ARM64 = arch.MACHINES["arm64"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "cache"))


def arm64_target(**spec) -> q.QemuTarget:
    return q.QemuTarget("a", {"package": "p", "architecture": "arm64", "suite": "bookworm",
                              **spec})


# -- the command line -----------------------------------------------------------------------


def test_the_arm64_command_line_boots_the_image_on_virt_with_the_userland_as_root():
    cmd = q.qemu_command("qemu-system-aarch64", accel="tcg", kernel=Path("/k/Image"),
                         initrd=Path("/k/initrd"), out_dir=Path("/o"), cpus=2,
                         root=Path("/c/userlands/bookworm-arm64-x/rootfs"), machine=ARM64)
    line = " ".join(cmd)
    assert cmd[0] == "qemu-system-aarch64"
    assert cmd[cmd.index("-machine") + 1] == "virt"
    assert cmd[cmd.index("-cpu") + 1] == "cortex-a57"
    assert cmd[cmd.index("-accel") + 1] == "tcg,thread=multi" and "-smp 2" in line
    assert cmd[cmd.index("-kernel") + 1] == "/k/Image"
    # the PL011 console; a panic still ends qemu
    assert cmd[cmd.index("-append") + 1] == "console=ttyAMA0 panic=-1 rdinit=/init"
    assert (f"local,id={guest.ROOT_TAG},path=/c/userlands/bookworm-arm64-x/rootfs,"
            f"security_model=none,readonly=on,multidevs=remap") in cmd
    assert f"local,id={guest.OUT_TAG},path=/o,security_model=none" in cmd
    # the same virtio-pci 9p devices as on x86: virt has a PCI host bridge built in
    assert f"virtio-9p-pci,fsdev={guest.ROOT_TAG},mount_tag={guest.ROOT_TAG}" in cmd


def test_the_x86_command_line_is_unchanged_by_default():
    cmd = q.qemu_command("qemu-system-x86_64", accel="tcg", kernel=Path("k"),
                         initrd=Path("i"), out_dir=Path("/o"))
    assert cmd[cmd.index("-machine") + 1] == "pc" and cmd[cmd.index("-cpu") + 1] == "qemu64"
    assert "console=ttyS0" in cmd[cmd.index("-append") + 1]


def test_the_plan_is_tcg_and_the_image_only():
    attempts, note = arm64_target().plan()
    assert attempts == [("tcg", "image")]
    assert "arm64 guest" in note and "TCG only" in note


# -- the initramfs on a userland root ------------------------------------------------------


def test_the_run_archive_on_a_userland_root_runs_the_userlands_kit_from_its_venv():
    root = guest.userland_root(Path("/c/rootfs"), ul.VENV)
    command = q.guest_kit_command(
        [f"{ul.VENV}/bin/python", "-m", "kit", "run", "--report", "/out", "-n", "2", "-k",
         "eventfd"], ["--kit-limit", "400"])
    entries = guest.read_cpio(guest.run_archive(Path("/out"), REPO, command, {"A": "1"},
                                                "t0ken", root=root))
    conf = entries["kit/run.conf"][1].decode()
    assert "KIT_OUT=/out\n" in conf and "KIT_KEEP=''\n" in conf    # no checkout to keep
    script = entries["kit/run.sh"][1].decode()
    assert "cd / || exit 2\n" in script
    assert f"export PATH={ul.VENV}/bin:/usr/local/sbin" in script
    assert str(REPO) not in script          # nothing of the host's checkout in the guest
    assert "/out/.kit-share-token" in script
    assert script.rstrip().endswith(
        f"exec {ul.VENV}/bin/python -m kit run --report /out -n 2 -k eventfd "
        f"--allow-machine-wide -- --kit-limit 400 2>&1")


def test_the_host_root_run_archive_is_what_it_was():
    entries = guest.read_cpio(guest.run_archive(Path("/o"), REPO, ["kit", "run"], {}))
    script = entries["kit/run.sh"][1].decode()
    assert f"cd {REPO} || exit 2" in script and f"PATH={REPO}/.venv/bin:" in script


@pytest.mark.parametrize("command, run_args, expected", [
    (["kit", "run", "-k", "x"], [], ["kit", "run", "-k", "x", "--allow-machine-wide"]),
    # a replay's pytest options stay after `--`; the option kit run reads goes before it
    (["kit", "run", "--", "--kit-id", "a.b"], [],
     ["kit", "run", "--allow-machine-wide", "--", "--kit-id", "a.b"]),
    (["kit", "run", "--", "--kit-id", "a.b"], ["--kit-limit", "400"],
     ["kit", "run", "--allow-machine-wide", "--", "--kit-id", "a.b", "--kit-limit", "400"]),
])
def test_the_guests_kit_command(command, run_args, expected):
    assert q.guest_kit_command(command, run_args) == expected


def test_a_userland_guest_reads_the_kernel_config_from_the_share(tmp_path):
    directory = tmp_path / "k"
    (directory / "tree" / "boot").mkdir(parents=True)
    (directory / "tree" / "boot" / "config-6.1.0-1-arm64").write_text("CONFIG_AIO=y\n")
    kernel = kernels.PreparedKernel(
        package="p", version="1", release="6.1.0-1-arm64", directory=str(directory),
        vmlinuz="", vmlinux=None, vmlinux_note="", initramfs="", modules=[],
        modules_source="", architecture="arm64")
    req = RunRequest(repo=REPO, out_dir=tmp_path / "out", kit_args=[], timeout=1,
                     log=tmp_path / "log")
    req.out_dir.mkdir()
    # whatever the host's path: the userland has none of the host's files
    assert q.guest_kernel_config(kernel, req, q.GUEST_OUT) == {
        "KIT_KERNEL_CONFIG": "/out/.kernel-config"}
    assert (req.out_dir / ".kernel-config").read_text() == "CONFIG_AIO=y\n"


# -- the kernel Image ---------------------------------------------------------------------


def fake_image(size: int = 4096) -> bytes:
    head = bytearray(size)
    head[56:60] = b"ARM\x64"
    return bytes(head)


@pytest.mark.parametrize("packed, how", [(lambda d: d, "uncompressed"),
                                         (gzip.compress, "inflated")])
def test_the_arm64_image_is_taken_plain_or_inflated(tmp_path, packed, how):
    vmlinuz = tmp_path / "vmlinuz-6.1.0-1-arm64"
    vmlinuz.write_bytes(packed(fake_image()))
    out = tmp_path / "Image"
    assert how in kernels.arm64_image(vmlinuz, out)
    assert out.read_bytes() == fake_image()


def test_a_vmlinuz_that_is_no_arm64_image_is_refused(tmp_path):
    vmlinuz = tmp_path / "vmlinuz-x"
    vmlinuz.write_bytes(gzip.compress(b"MZ" + b"\0" * 4096))
    with pytest.raises(kernels.KernelError, match="not an arm64 kernel Image"):
        kernels.arm64_image(vmlinuz, tmp_path / "Image")
    vmlinuz.write_bytes(b"\x1f\x8b broken")
    with pytest.raises(kernels.KernelError, match="does not inflate"):
        kernels.arm64_image(vmlinuz, tmp_path / "Image")


# -- apt and busybox for another architecture ---------------------------------------------


def test_the_arm64_lists_are_a_private_configuration_of_their_own():
    target = arm64_target()
    apt = target.private_apt
    assert isinstance(apt, arch.ForeignApt)
    assert apt.root == kernels.cache_root() / "apt" / "bookworm-arm64"
    options = apt.options()
    assert options[-4:] == ["-o", "APT::Architecture=arm64", "-o", "APT::Architectures=arm64"]
    # the host's own suite configuration (the x86 kernels') is another directory
    host = q.QemuTarget("h", {"package": "p", "suite": "bookworm"}).private_apt
    assert type(host) is not arch.ForeignApt and host.root != apt.root


def aarch64_elf(static: bool = True) -> bytes:
    """A minimal aarch64 ELF64 executable (with a PT_INTERP unless static)."""
    import struct

    interp = b"/lib/ld-linux-aarch64.so.1\0"
    phnum = 1 if static else 2
    header = (b"\x7fELF\x02\x01\x01" + b"\0" * 9
              + struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, 0x400000, 64, 0, 0, 64, 56, phnum,
                            64, 0, 0))
    load = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, 0x1000, 0x1000, 0x1000)
    phdrs = load
    if not static:
        phdrs += struct.pack("<IIQQQQQQ", 3, 4, 64 + 56 * 2, 0, 0, len(interp), len(interp),
                             1)
    return header + phdrs + interp


def test_a_busybox_of_another_architecture_is_not_taken(tmp_path):
    busybox = tmp_path / "busybox"
    busybox.write_bytes(aarch64_elf())
    assert q.is_static_elf(busybox, "EM_AARCH64")
    assert not q.is_static_elf(busybox, "EM_X86_64")
    dynamic = tmp_path / "dynamic"
    dynamic.write_bytes(aarch64_elf(static=False))
    assert not q.is_static_elf(dynamic, "EM_AARCH64")
    host = q.find_busybox()
    if host is not None:      # the host's (x86) busybox is no busybox for an arm64 guest
        assert q.find_busybox(str(host), "EM_AARCH64") is None
    # a target that names an x86 busybox for its arm64 guest is told so
    reason = arm64_target(busybox=str(dynamic))._foreign_problem()
    assert "is not a static arm64 executable" in reason


def test_busybox_static_is_fetched_for_the_guests_architecture(tmp_path, monkeypatch):
    calls = []
    deb_tree = {"bin/busybox": aarch64_elf()}

    def fetch(package, version, directory, options, log=None):
        calls.append((package, version, options))
        deb = directory / f"{package}_{version}_arm64.deb"
        deb.write_bytes(b"")
        return deb

    def unpack(deb, tree, log=None):
        for name, data in deb_tree.items():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).write_bytes(data)

    monkeypatch.setattr(arch, "fetch_deb", fetch)
    monkeypatch.setattr(arch, "unpack_deb", unpack)
    path = arch.foreign_busybox("1:1.35.0-4", "arm64", ["-o", "APT::Architecture=arm64"])
    assert path.read_bytes() == aarch64_elf()
    assert calls == [("busybox-static", "1:1.35.0-4", ["-o", "APT::Architecture=arm64"])]
    assert arch.foreign_busybox("1:1.35.0-4", "arm64", []) == path     # cached
    assert len(calls) == 1
    deb_tree.clear()
    with pytest.raises(kernels.KernelError, match="has no bin/busybox"):
        arch.foreign_busybox("2", "arm64", [])


def test_no_busybox_static_in_the_lists_is_said_in_list(monkeypatch):
    monkeypatch.setattr(kernels, "apt_candidates", lambda pattern, options=(): {})
    target = arm64_target()
    with pytest.raises(kernels.KernelError, match="apt knows no busybox-static for arm64 in "
                                                  "bookworm"):
        target.busybox_version([])
    # what `kit matrix --list` prints, the kernel being there
    monkeypatch.setattr(q.QemuTarget, "resolve", lambda self, log=None, **kw: ("p", "1"))
    monkeypatch.setattr(q.QemuTarget, "apt_options", lambda self, log=None: [])
    assert target.fetch_problem() == "apt knows no busybox-static for arm64 in bookworm"


# -- why it cannot run here ----------------------------------------------------------------


def test_the_target_file_validates_and_names_an_arm64_kernel():
    target = load_target(TARGET_FILE)
    assert isinstance(target, q.QemuTarget) and target.name == "debian-arm64-6.1"
    assert target.architecture == "arm64" and target.machine is ARM64
    assert target.spec["suite"] == "bookworm" and target.spec["timeout"] > 0
    # a real kernel: not qemu-user's known deviations
    assert target_env(target)["KIT_PLATFORM"] == "linux"
    versions = kernels.parse_apt_show(
        "Package: linux-image-6.1.0-57-arm64-unsigned\nVersion: 6.1.192-3\n\n"
        "Package: linux-image-6.1.0-57-cloud-arm64-unsigned\nVersion: 6.1.192-3\n\n"
        "Package: linux-image-6.1.0-57-rt-arm64-unsigned\nVersion: 6.1.192-3\n\n"
        "Package: linux-image-6.1.0-57-amd64-unsigned\nVersion: 6.1.192-3\n")
    assert kernels.pick_newest(target.spec["package"], versions) == (
        "linux-image-6.1.0-57-arm64-unsigned", "6.1.192-3")


def test_unavailable_names_what_an_arm64_guest_lacks(monkeypatch):
    monkeypatch.setattr(arch, "host_machine", lambda: "x86_64")
    monkeypatch.setattr(q, "host_machine", lambda: "x86_64")
    assert "qemu-system-arm" in arm64_target(qemu="no-such-qemu-aarch64").unavailable()
    assert "architecture 'mips'" in q.QemuTarget(
        "t", {"package": "p", "architecture": "mips"}).unavailable()
    if arm64_target().qemu is None:
        pytest.skip("qemu-system-aarch64 is not installed: the rest is never reached")
    assert "accel: kvm, but an arm64 guest cannot use KVM" in arm64_target(
        accel="kvm").unavailable()
    assert "must name its `suite`" in q.QemuTarget(
        "t", {"package": "p", "architecture": "arm64"}).unavailable()
    assert "boot must be auto or image" in arm64_target(boot="pvh").unavailable()
    monkeypatch.setattr(ul.UserlandTarget, "unavailable",
                        lambda self: "mmdebstrap is not installed (Debian package: mmdebstrap)")
    assert arm64_target().unavailable() == (
        "the guest's root is a Debian arm64 userland, and here mmdebstrap is not installed "
        "(Debian package: mmdebstrap)")


def test_the_userland_is_the_kernels_suite_and_architecture():
    userland = arm64_target(suite="bookworm").userland()
    assert (userland.suite, userland.architecture) == ("bookworm", "arm64")
    # the same recipe as the qemu-user target's: one root file system for both
    qemu_user = load_target(REPO / "targets" / "debian-arm64.yaml")
    assert userland.directory() == qemu_user.directory()
    # more packages: a root file system of its own
    compiler = arm64_target(userland_packages=["gcc", "libc6-dev"]).userland()
    assert compiler.packages()[-2:] == ["gcc", "libc6-dev"]
    assert compiler.directory() != qemu_user.directory()
    assert "userland_packages must be a list" in arm64_target(
        userland_packages="gcc")._foreign_problem()


def test_matrix_list_gives_the_reason(tmp_path):
    targets = tmp_path / "targets"
    targets.mkdir()
    (targets / "arm.yaml").write_text(textwrap.dedent("""\
        name: arm
        kind: qemu
        architecture: arm64
        suite: bookworm
        package: linux-image-6\\.1\\.0-[0-9]+-arm64-unsigned
        qemu: no-such-qemu-system-aarch64
        """))
    (targets / "arm-nosuite.yaml").write_text(textwrap.dedent("""\
        name: arm-nosuite
        kind: qemu
        architecture: arm64
        package: linux-image-6\\.1\\.0-[0-9]+-arm64-unsigned
        """))
    proc = subprocess.run([sys.executable, "-m", "kit", "matrix", "--list", "--targets",
                           str(targets)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KIT_CACHE=str(tmp_path / "cache")),
                          check=False)
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert lines["arm"].endswith("skipped: no-such-qemu-system-aarch64 is not installed "
                                 "(Debian package: qemu-system-arm)")
    if arm64_target().qemu is not None:
        assert "must name its `suite`" in lines["arm-nosuite"]


# -- run() against a fake qemu-system-aarch64 ------------------------------------------------

FAKE_QEMU = """#!{python}
import json, os, sys
args = sys.argv[1:]
if args == ["--version"]:
    print("QEMU emulator version 0.0 (fake)")
    sys.exit(0)
share = lambda tag: next(a.split("path=")[1].split(",")[0] for a in args if f"id={{tag}}" in a)
out, root = share("kitout"), share("kitroot")
json.dump(args, open(os.path.join(out, "args.json"), "w"))
from kit.matrix.qemu_initramfs import read_cpio
files = read_cpio(open(args[args.index("-initrd") + 1], "rb").read())
open(os.path.join(out, "run.sh"), "wb").write(files["kit/run.sh"][1])
print("[    0.000000] Booting Linux on physical CPU 0x0000000000 [0x411fd070]", flush=True)
print("KIT-INIT: up 2.40 6.1.0-57-arm64", flush=True)
print("KIT-INIT: kit start 3.10", flush=True)
print("KIT-INIT: imported 18.00", flush=True)
print("KIT-INIT: collected 40.00 13", flush=True)
print("KIT-INIT: tested 70.00", flush=True)
open(os.path.join(out, "report.json"), "w").write(json.dumps({{"target": {{}}}}))
open(os.path.join(out, "{exit_file}"), "w").write("0\\n")
print("KIT-INIT: kit exit 0 72.00", flush=True)
"""


def test_a_run_boots_the_image_with_the_userland_and_times_its_phases(tmp_path):
    qemu = tmp_path / "qemu-system-aarch64"
    qemu.write_text(FAKE_QEMU.format(python=sys.executable, exit_file=guest.EXIT_FILE))
    qemu.chmod(0o755)
    target = arm64_target(qemu=str(qemu), run_args=["--kit-limit", "400"])
    directory = kernels.kernels_dir() / "p_1"
    directory.mkdir(parents=True)
    for name in ("vmlinuz", "Image"):
        (directory / name).write_bytes(fake_image())
    (directory / "initramfs.cpio").write_bytes(guest.Cpio().bytes())
    target.kernel = kernels.PreparedKernel(
        package="linux-image-6.1.0-57-arm64-unsigned", version="6.1.192-3",
        release="6.1.0-57-arm64", directory=str(directory),
        vmlinuz=str(directory / "vmlinuz"), vmlinux=None, vmlinux_note="",
        initramfs=str(directory / "initramfs.cpio"), modules=["9p"],
        modules_source="modinfo", architecture="arm64", image=str(directory / "Image"))
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    target.root = guest.userland_root(rootfs, ul.VENV)
    req = RunRequest(repo=REPO, out_dir=tmp_path / "out", kit_args=["-k", "eventfd"],
                     timeout=60, log=tmp_path / "log", env={"KIT_TARGET_NAME": "a",
                                                            "KIT_PLATFORM": "linux"})
    req.cpus = 2
    result = target.run(req)
    assert result.status == "ran", result.reason
    args = json.loads((req.out_dir / "args.json").read_text())
    assert args[args.index("-kernel") + 1] == str(directory / "Image")
    assert args[args.index("-machine") + 1] == "virt"
    assert any(a.startswith(f"local,id={guest.ROOT_TAG},path={rootfs},") for a in args)
    script = (req.out_dir / "run.sh").read_text()
    assert f"{ul.VENV}/bin/python -m kit run --report /out -n 2 -k eventfd " \
           f"--allow-machine-wide -- --kit-limit 400" in script
    assert "export PYTEST_PLUGINS=kit.matrix.guest_phases" in script
    # no man pages in the userland to match, but the names of the validated specs (the
    # cache itself is gone with the run)
    assert "export XDG_CACHE_HOME=/out/.kit-cache" in script
    meta = result.metadata
    assert meta["architecture"] == "arm64" and meta["boot"] == "Image"
    assert meta["accel"] == "tcg" and meta["userland"] == str(rootfs)
    assert "qemu-system-aarch64 virt -cpu cortex-a57" in meta["how"]
    assert meta["phases"]["python"] == 14.9 and meta["phases"]["suite"] == 30.0
    assert not (req.out_dir / guest.SHARE_TOKEN).exists()


# -- the userland's kit, shared by the qemu-user target and the VM ---------------------------


def test_the_wheel_digest_is_what_it_installs_not_when_it_was_built(tmp_path):
    import zipfile

    def wheel(path, when):
        with zipfile.ZipFile(path, "w") as z:
            for name, data in (("kit/__init__.py", b"x = 1\n"), ("kit/a.py", b"")):
                z.writestr(zipfile.ZipInfo(name, date_time=when), data)
        return path

    a = wheel(tmp_path / "a.whl", (2020, 1, 1, 0, 0, 0))
    b = wheel(tmp_path / "b.whl", (2026, 12, 6, 10, 0, 0))
    assert ul.wheel_digest(a) == ul.wheel_digest(b)
    with zipfile.ZipFile(b, "a") as z:
        z.writestr("kit/b.py", b"")
    assert ul.wheel_digest(a) != ul.wheel_digest(b)


def test_the_kit_is_not_reinstalled_under_a_running_target(tmp_path, monkeypatch):
    userland = ul.UserlandTarget("u", {"suite": "bookworm", "architecture": "arm64"})
    directory = userland.directory()
    directory.mkdir(parents=True)
    installs = []

    def build(cmd, log, timeout, **kw):       # `pip wheel`: a small wheel, always the same
        import zipfile

        with zipfile.ZipFile(Path(cmd[cmd.index("-w") + 1]) / "kit-1-py3-none-any.whl",
                             "w") as z:
            z.writestr("kit/__init__.py", "")
    monkeypatch.setattr(ul, "_run", build)
    monkeypatch.setattr(ul.UserlandTarget, "_pip",
                        lambda self, d, args, out: installs.append(args[-1]))
    with open(tmp_path / "log", "w") as log:
        userland._install_kit(directory, log)
        assert len(installs) == 1
        userland._install_kit(directory, log)        # the same wheel: left as it is
        assert len(installs) == 1
        # another kit while a run holds the userland: the reinstall waits, bounded
        (directory / ul.INSTALLED).write_text("another kit")
        held, release = threading.Event(), threading.Event()

        def run():
            with userland.in_use():
                held.set()
                release.wait(30)
        runner = threading.Thread(target=run)
        runner.start()
        try:
            held.wait(10)
            start = time.monotonic()
            with pytest.raises(ul.UserlandError, match="another target has been running"), \
                    userland._exclusive(log, timeout=1.5):
                pass
            assert time.monotonic() - start < 10
        finally:
            release.set()
            runner.join(10)
        userland._install_kit(directory, log)        # free again: reinstalled
        assert len(installs) == 2


# -- the real thing -------------------------------------------------------------------------


@pytest.mark.skipif(os.environ.get("KIT_VM_TESTS") != "1",
                    reason="boots Debian's arm64 6.1 kernel under qemu-system-aarch64 (TCG), "
                           "minutes: set KIT_VM_TESTS=1 to run it")
@pytest.mark.timeout(3600)
def test_debian_arm64_61_boots_and_runs_the_kit(tmp_path, monkeypatch):
    from helpers import boot_and_run

    monkeypatch.delenv("KIT_CACHE")          # the user's real cache: download and build once
    target, result, report = boot_and_run(TARGET_FILE, tmp_path / "arm64")
    assert report["target"]["arch"] == "aarch64" and report["target"]["platform"] == "linux"
    assert report["target"]["release"] == target.kernel.release == result.metadata[
        "kernel_release"] and target.kernel.release.endswith("-arm64")
    assert {"boot", "python", "collect", "suite"} <= set(result.metadata["phases"])
