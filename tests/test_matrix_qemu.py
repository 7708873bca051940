"""The qemu target kind (kit/matrix/qemu*.py), without booting a VM.

Package resolution runs against a fake apt-cache; vmlinux extraction, ELF notes and module
.modinfo against small synthetic files, and against the real Debian packages when an earlier
`kit matrix` (or KIT_VM_TESTS run) left them in the cache; the run logic against a fake
qemu-system-x86_64 that prints what the guest's /init prints. The one test that boots a real
kernel is behind KIT_VM_TESTS=1.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import stat
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kit.matrix import qemu as q
from kit.matrix import qemu_initramfs as guest
from kit.matrix import qemu_kernel as kernels
from kit.matrix.base import RunRequest
from kit.matrix.targets import load_target

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test but the real-package ones gets an empty cache of its own."""
    monkeypatch.setenv("KIT_CACHE", str(tmp_path / "cache"))


def real_kernels() -> list[kernels.PreparedKernel]:
    """Kernels a previous run prepared in the user's cache (none on a fresh machine)."""
    root = kernels.kernels_dir()          # at import: the user's KIT_CACHE, not a test's
    if not root.is_dir():
        return []
    return [k for k in map(kernels.PreparedKernel.load, sorted(root.iterdir())) if k]


REAL = real_kernels()
REAL_AMD64 = [k for k in REAL if k.architecture == "amd64"]    # the others boot an Image
needs_real = pytest.mark.skipif(not REAL, reason="no Debian kernel package in ~/.cache/kit/"
                                "kernels yet (a `kit matrix` run with a qemu target fills it)")


# -- Debian versions and package resolution -------------------------------------------------


@pytest.mark.parametrize("a, b, order", [
    ("6.1.192-2", "6.1.192-1", 1),
    ("6.1.190-1", "6.1.192-1", -1),
    ("6.12.117-1~deb12u1", "6.12.117-1", -1),      # ~ sorts before the end
    ("6.12.117-1~deb12u1", "6.12.111-1~deb12u1", 1),
    ("1:1.0", "2.0", 1),                            # the epoch first
    ("1.10", "1.9", 1),                             # digits compare as numbers
    ("1.0a", "1.0", 1),
    ("1.0~rc1", "1.0", -1),
    ("1.0+b1", "1.0", 1),
    ("2.0-1", "2.0-1", 0),
    ("1.001", "1.1", 0),
])
def test_debian_versions_compare_like_dpkg(a, b, order):
    assert kernels.compare_versions(a, b) == order
    assert kernels.compare_versions(b, a) == -order
    if shutil.which("dpkg"):
        op = {1: "gt", 0: "eq", -1: "lt"}[order]
        assert subprocess.run(["dpkg", "--compare-versions", a, op, b],
                              check=False).returncode == 0


APT_SHOW = textwrap.dedent("""\
    Package: linux-image-6.1.0-55-amd64-unsigned
    Source: linux
    Version: 6.1.192-1
    Description: Linux 6.1 for 64-bit PCs

    Package: linux-image-6.1.0-56-amd64-unsigned
    Source: linux
    Version: 6.1.192-2
    Description: Linux 6.1 for 64-bit PCs

    Package: linux-image-6.1.0-56-cloud-amd64-unsigned
    Version: 6.1.192-2

    Package: linux-image-6.1.0-9-amd64-unsigned
    Version: 6.1.27-1
    """)


def test_apt_show_is_parsed_into_candidate_versions():
    assert kernels.parse_apt_show(APT_SHOW) == {
        "linux-image-6.1.0-55-amd64-unsigned": "6.1.192-1",
        "linux-image-6.1.0-56-amd64-unsigned": "6.1.192-2",
        "linux-image-6.1.0-56-cloud-amd64-unsigned": "6.1.192-2",
        "linux-image-6.1.0-9-amd64-unsigned": "6.1.27-1"}


def test_a_pattern_picks_the_newest_version_and_leaves_other_flavours_out():
    versions = kernels.parse_apt_show(APT_SHOW)
    pattern = r"linux-image-6\.1\.0-[0-9]+-amd64-unsigned"
    assert kernels.pick_newest(pattern, versions) == ("linux-image-6.1.0-56-amd64-unsigned",
                                                      "6.1.192-2")
    # an exact name is taken as it is, even though it is not a regex matching itself
    assert kernels.pick_newest("linux-image-6.1.0-55-amd64-unsigned", versions) == (
        "linux-image-6.1.0-55-amd64-unsigned", "6.1.192-1")
    assert kernels.pick_newest(r"linux-image-5\..*", versions) is None


@pytest.mark.parametrize("pattern, prefix", [
    (r"linux-image-6\.1\.0-[0-9]+-amd64-unsigned", "linux-image-6.1.0-"),
    (r"linux-image-6\.12\.\d+\+deb12-amd64-unsigned", "linux-image-6.12."),
    ("linux-image-6.1.0-56-amd64-unsigned", "linux-image-6"),
    ("linux-images*", "linux-image"),
])
def test_the_literal_prefix_narrows_apt_cache_pkgnames(pattern, prefix):
    assert kernels.literal_prefix(pattern) == prefix


def fake_apt(tmp_path, monkeypatch) -> None:
    """apt-cache answering from APT_SHOW (show exits 100 on an unknown name, as apt does)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "apt-show.txt").write_text(APT_SHOW)
    script = bindir / "apt-cache"
    script.write_text(f"""#!{sys.executable}
import re, sys
stanzas = open({str(bindir / 'apt-show.txt')!r}).read().split("\\n\\n")
names = [re.search(r"^Package: (.*)$", s, re.MULTILINE).group(1) for s in stanzas if s.strip()]
if sys.argv[1] == "pkgnames":
    print("\\n".join(n for n in names if n.startswith(sys.argv[2] if len(sys.argv) > 2 else "")))
elif sys.argv[1] == "show":
    wanted = [a for a in sys.argv[2:] if not a.startswith("-")]
    if any(w not in names for w in wanted):
        print("E: No packages found", file=sys.stderr)
        sys.exit(100)
    print("\\n\\n".join(s for s in stanzas if s.strip() and names[stanzas.index(s)] in wanted))
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def test_the_target_resolves_its_package_through_apt_cache(tmp_path, monkeypatch):
    fake_apt(tmp_path, monkeypatch)
    target = q.QemuTarget("t", {"package": r"linux-image-6\.1\.0-[0-9]+-amd64-unsigned"})
    assert target.resolve() == ("linux-image-6.1.0-56-amd64-unsigned", "6.1.192-2")
    exact = q.QemuTarget("t", {"package": "linux-image-6.1.0-9-amd64-unsigned"})
    assert exact.resolve() == ("linux-image-6.1.0-9-amd64-unsigned", "6.1.27-1")


def test_an_unknown_package_says_what_the_pattern_is(tmp_path, monkeypatch):
    fake_apt(tmp_path, monkeypatch)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)     # no `apt-get update` from a test
    target = q.QemuTarget("t", {"package": r"linux-image-4\.19.*"})
    with pytest.raises(kernels.KernelError, match="regular expression"):
        target.resolve()


def test_without_a_match_in_apt_a_cached_kernel_is_used(tmp_path, monkeypatch):
    fake_apt(tmp_path, monkeypatch)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for version in ("6.1.10-1", "6.1.9-1"):
        prepared_kernel(kernels.kernels_dir() / f"k_{version}",
                        "linux-image-6.1.0-1-amd64-unsigned", version).save()
    # kernels live under $KIT_CACHE/kernels/<package>_<version>
    assert [k.version for k in kernels.cached_kernels(r"linux-image-6\.1\.0-1-.*")] == [
        "6.1.10-1", "6.1.9-1"]
    target = q.QemuTarget("t", {"package": r"linux-image-6\.1\.0-1-amd64-unsigned"})
    assert target.resolve() == ("linux-image-6.1.0-1-amd64-unsigned", "6.1.10-1")


# -- vmlinux out of vmlinuz -----------------------------------------------------------------


def elf_with_notes(notes: list[tuple[bytes, int, bytes]], body: bytes = b"") -> bytes:
    """A minimal ELF64 executable whose one PT_NOTE segment holds `notes`."""
    blob = b""
    for name, ntype, desc in notes:
        blob += struct.pack("<III", len(name), len(desc), ntype)
        blob += name + b"\0" * (-len(name) % 4) + desc + b"\0" * (-len(desc) % 4)
    header = (b"\x7fELF\x02\x01\x01" + b"\0" * 9
              + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0x1000000, 64, 0, 0, 64, 56, 1, 64,
                            0, 0))
    phdr = struct.pack("<IIQQQQQQ", 4, 4, 120, 0, 0, len(blob), len(blob), 4)
    return header + phdr + blob + body


PVH_ELF = elf_with_notes([(b"GNU\0", 3, b"\x01" * 20), (b"Xen\0", 18, b"\0\0\0\x01")],
                         body=b"kernel text " * 1000)


def bzimage(payload: bytes, setup_sects: int = 3, offset: int = 0x2c0) -> bytes:
    """A bzImage-shaped file: setup header (HdrS, protocol 2.15) pointing at `payload`."""
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, 0x020F)
    struct.pack_into("<II", setup, 0x248, offset, len(payload))
    decompressor = bytearray(b"\x90" * offset)
    decompressor[10:13] = b"\x1f\x8b\x08"           # a stray gzip magic before the real one
    return bytes(setup) + bytes(decompressor) + payload + struct.pack("<I", len(PVH_ELF))


@pytest.mark.parametrize("kind, compress", [
    ("xz", lambda d: lzma.compress(d, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32)),
    ("gzip", gzip.compress),
    # the kernel's lzma streams have a 16 MiB-multiple dictionary: magic 5d 00 00 00
    ("lzma", lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE, filters=[
        {"id": lzma.FILTER_LZMA1, "dict_size": 1 << 24,
         "mf": lzma.MF_HC4}])),
    ("zstd", None),
])
def test_vmlinux_is_found_by_the_setup_header(kind, compress):
    if compress is None:
        if not shutil.which("zstd"):
            pytest.skip("the zstd command is not installed")
        compress = (lambda d: subprocess.run(["zstd", "-q", "-c"], input=d,
                                             capture_output=True, check=True).stdout)
    elf, found = kernels.extract_vmlinux(bzimage(compress(PVH_ELF)))
    assert (elf, found) == (PVH_ELF, kind)
    assert kernels.has_pvh_note(elf)


def test_vmlinux_is_found_by_its_magic_without_a_setup_header():
    image = b"\0" * 700 + b"\x1f\x8b\x08 not a stream" + gzip.compress(PVH_ELF) + b"\1\2\3\4"
    assert kernels.bzimage_payload(image) is None
    assert kernels.extract_vmlinux(image) == (PVH_ELF, "gzip")


def test_an_image_with_no_kernel_inside_is_an_error():
    with pytest.raises(kernels.KernelError, match="no compressed ELF kernel"):
        kernels.extract_vmlinux(b"\0" * 4096 + gzip.compress(b"not an ELF file"))


def test_the_pvh_note_is_required_for_a_direct_boot():
    assert not kernels.has_pvh_note(elf_with_notes([(b"GNU\0", 3, b"\1" * 20)]))
    assert not kernels.has_pvh_note(elf_with_notes([(b"Xen\0", 17, b"\0" * 4)]))
    assert not kernels.has_pvh_note(b"MZ not an ELF")


@needs_real
@pytest.mark.parametrize("kernel", REAL_AMD64, ids=lambda k: k.package)
def test_vmlinux_of_a_real_debian_package(kernel):
    elf, kind = kernels.extract_vmlinux(Path(kernel.vmlinuz).read_bytes())
    assert elf[:4] == b"\x7fELF" and kind in ("xz", "zstd", "gzip", "lzma", "lz4")
    assert kernels.has_pvh_note(elf), "Debian amd64 kernels have CONFIG_PVH=y"
    if kernel.vmlinux:
        assert Path(kernel.vmlinux).stat().st_size == len(elf)


@needs_real
@pytest.mark.parametrize("kernel", REAL, ids=lambda k: k.package)
def test_the_config_of_a_real_debian_package_is_what_the_guest_is_given(kernel):
    from kit.engine import kernel_config

    path = kernel.config_file()
    assert path is not None and path.name == f"config-{kernel.release}"
    config = kernel_config.read(str(path))
    # the options specs name in `applies: kernel_config`; Debian builds them all in
    for option in ("CONFIG_AIO", "CONFIG_CHECKPOINT_RESTORE", "CONFIG_KCMP"):
        assert config.enabled(option), option


# -- modules --------------------------------------------------------------------------------


def module_elf(modinfo: dict[str, str]) -> bytes:
    """A minimal ELF64 relocatable with a .modinfo section, as a kernel module has."""
    info = b"".join(f"{k}={v}".encode() + b"\0" for k, v in modinfo.items())
    shstrtab = b"\0.modinfo\0.shstrtab\0"
    data = info + shstrtab
    shoff = 64 + len(data) + (-(64 + len(data)) % 8)
    header = (b"\x7fELF\x02\x01\x01" + b"\0" * 9
              + struct.pack("<HHIQQQIHHHHHH", 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2))
    body = header + data + b"\0" * (shoff - 64 - len(data))

    def sh(name, offset, size):
        return struct.pack("<IIQQQQIIQQ", name, 1 if name == 1 else 3, 0, 0, offset, size,
                           0, 0, 1, 0)
    return (body + b"\0" * 64 + sh(1, 64, len(info))
            + sh(10, 64 + len(info), len(shstrtab)))


def test_module_depends_come_from_modinfo():
    elf = module_elf({"license": "GPL", "depends": "9pnet,netfs,fs-cache", "name": "9p"})
    assert kernels.module_depends(elf) == ["9pnet", "netfs", "fs_cache"]
    assert kernels.module_depends(module_elf({"depends": ""})) == []


def test_module_names_are_normalised_like_the_kernel_does():
    assert kernels.module_name("kernel/net/9p/9pnet_virtio.ko.xz") == "9pnet_virtio"
    assert kernels.module_name("kernel/drivers/virtio/virtio-pci.ko") == "virtio_pci"
    assert kernels.module_name("9p.ko.zst") == "9p"


DEPS = {"9p": ["9pnet", "netfs", "fscache"], "9pnet_virtio": ["9pnet", "virtio", "virtio_ring"],
        "9pnet": [], "netfs": [], "fscache": ["netfs"], "virtio": [], "virtio_ring": [],
        "virtio_pci": ["virtio", "virtio_ring", "virtio_pci_modern_dev"],
        "virtio_pci_modern_dev": []}


def test_modules_load_after_their_dependencies():
    order = kernels.load_order(kernels.GUEST_MODULES, DEPS, builtin=set())
    assert sorted(order) == sorted(DEPS)
    for module, needs in DEPS.items():
        assert all(order.index(n) < order.index(module) for n in needs), module


def test_built_in_modules_are_not_loaded():
    deps = {k: v for k, v in DEPS.items() if not k.startswith("virtio")}
    builtin = {"virtio", "virtio_ring", "virtio_pci", "virtio_pci_modern_dev", "fscache"}
    deps.pop("fscache")
    assert kernels.load_order(kernels.GUEST_MODULES, deps, builtin) == [
        "9pnet", "9pnet_virtio", "netfs", "9p"]


def test_a_missing_or_cyclic_module_is_an_error():
    with pytest.raises(kernels.KernelError, match="9pnet_virtio.*neither built in"):
        kernels.load_order(["9pnet_virtio"], {}, builtin=set())
    with pytest.raises(kernels.KernelError, match="cycle"):
        kernels.load_order(["a"], {"a": ["b"], "b": ["a"]}, builtin=set())


def test_modules_dep_is_used_when_the_package_has_one(tmp_path):
    root = tmp_path / "lib/modules/6.1.0-1-amd64"
    (root / "kernel/fs/9p").mkdir(parents=True)
    (root / "kernel/net/9p").mkdir(parents=True)
    for path in ("kernel/fs/9p/9p.ko.xz", "kernel/net/9p/9pnet.ko.xz",
                 "kernel/net/9p/9pnet_virtio.ko.xz"):
        (root / path).write_bytes(b"")                  # never read: modules.dep says it all
    (root / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko.xz: kernel/net/9p/9pnet.ko.xz\n"
        "kernel/net/9p/9pnet.ko.xz:\n"
        "kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n")
    (root / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    tree = kernels.ModuleTree.scan(root)
    assert tree.source == "modules.dep"
    assert tree.order(kernels.GUEST_MODULES) == ["9pnet", "9pnet_virtio", "9p"]


def test_without_modules_dep_the_modinfo_of_each_module_is_read(tmp_path):
    root = tmp_path / "lib/modules/6.12.1+deb12-amd64"
    (root / "kernel").mkdir(parents=True)
    for name, deps in {"9p": "9pnet,netfs", "9pnet": "", "netfs": "",
                       "9pnet_virtio": "9pnet"}.items():
        (root / "kernel" / f"{name}.ko.xz").write_bytes(
            lzma.compress(module_elf({"depends": deps, "name": name})))
    (root / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n"
                                          "kernel/fs/netfs/netfs.ko\n")
    tree = kernels.ModuleTree.scan(root)
    assert tree.source == "modinfo"
    order = tree.order(kernels.GUEST_MODULES)
    assert order[-1] == "9p" and order.index("9pnet") < order.index("9pnet_virtio")
    assert set(order) == {"9p", "9pnet", "netfs", "9pnet_virtio"}   # a shipped .ko wins


@needs_real
@pytest.mark.parametrize("kernel", REAL, ids=lambda k: k.package)
def test_module_order_of_a_real_debian_package(kernel):
    tree = kernels.ModuleTree.scan(Path(kernel.directory) / "tree/lib/modules" / kernel.release)
    order = tree.order(kernels.GUEST_MODULES + kernels.DISK_MODULES)
    assert order == kernel.modules and kernel.disk
    assert order.index("9pnet") < order.index("9pnet_virtio") < order.index("9p")
    # the Python image's disk and file system, after their own dependencies
    assert order[-1] == "ext4" and order.index("crc32c_generic") < order.index("ext4")
    config = kernels.parse_config(
        (Path(kernel.directory) / "tree/boot" / f"config-{kernel.release}").read_text())
    for module, option in (("9p", "CONFIG_9P_FS"), ("virtio_pci", "CONFIG_VIRTIO_PCI"),
                           ("9pnet_virtio", "CONFIG_NET_9P_VIRTIO")):
        assert (module in order) == (config[option] == "m"), option


def unpacked_package(package: str, version: str, release: str) -> Path:
    """A cache entry as `apt-get download` + `dpkg -x` leave it, made of synthetic files."""
    directory = kernels.kernels_dir() / f"{package}_{version}"
    tree = directory / "tree"
    (tree / "boot").mkdir(parents=True)
    (tree / "boot" / f"vmlinuz-{release}").write_bytes(
        bzimage(lzma.compress(PVH_ELF, check=lzma.CHECK_CRC32)))
    (tree / "boot" / f"config-{release}").write_text(
        "CONFIG_PVH=y\nCONFIG_9P_FS=m\n# CONFIG_VIRTIO_MMIO is not set\nCONFIG_VIRTIO_PCI=y\n")
    mods = tree / "lib/modules" / release
    (mods / "kernel/net/9p").mkdir(parents=True)
    (mods / "kernel/fs/9p").mkdir(parents=True)
    for name, deps in {"9pnet": "", "9pnet_virtio": "9pnet", "9p": "9pnet"}.items():
        sub = "fs" if name == "9p" else "net"
        (mods / f"kernel/{sub}/9p/{name}.ko.xz").write_bytes(
            lzma.compress(module_elf({"depends": deps, "name": name})))
    (mods / "modules.builtin").write_text("kernel/drivers/virtio/virtio_pci.ko\n")
    (tree / ".complete").write_text("")
    (directory / f"{package}_{version}_amd64.deb").write_bytes(b"!<arch>\n")
    return directory


def test_a_kernel_is_prepared_once_and_then_comes_from_the_cache(tmp_path, monkeypatch):
    directory = unpacked_package("linux-image-9.9.9-1-amd64-unsigned", "9.9.9-1",
                                 "9.9.9-1-amd64")
    busybox = tmp_path / "busybox"
    busybox.write_bytes(elf_with_notes([]))
    kernel = kernels.prepare_kernel("linux-image-9.9.9-1-amd64-unsigned", "9.9.9-1", busybox)
    assert kernel.release == "9.9.9-1-amd64" and kernel.config["CONFIG_VIRTIO_PCI"] == "y"
    assert Path(kernel.vmlinux).read_bytes() == PVH_ELF
    assert kernel.vmlinux_note == "extracted from xz-compressed vmlinuz"
    assert kernel.modules == ["9pnet", "9pnet_virtio", "9p"]
    entries = guest.read_cpio(Path(kernel.initramfs).read_bytes())
    assert entries["lib/modules/9p.ko"][1][:4] == b"\x7fELF"
    assert kernels.PreparedKernel.load(directory) == kernel

    # the second time nothing is downloaded, unpacked, extracted or built
    def no(*args, **kwargs):
        raise AssertionError("the cache was not used")
    monkeypatch.setattr(kernels, "_run", no)
    monkeypatch.setattr(kernels, "extract_vmlinux", no)
    built = Path(kernel.initramfs).stat().st_mtime_ns
    assert kernels.prepare_kernel(kernel.package, kernel.version, busybox) == kernel
    assert Path(kernel.initramfs).stat().st_mtime_ns == built
    # another busybox (or another /init) rebuilds the initramfs, and only that
    busybox.write_bytes(elf_with_notes([], body=b"v2"))
    again = kernels.prepare_kernel(kernel.package, kernel.version, busybox)
    assert again.initramfs_id != kernel.initramfs_id
    assert guest.read_cpio(Path(again.initramfs).read_bytes())["bin/busybox"][1].endswith(b"v2")


# -- the initramfs and the guest's scripts --------------------------------------------------


def test_cpio_round_trips_files_links_and_device_nodes():
    archive = guest.Cpio()
    archive.dir("bin")
    archive.file("bin/x", b"abc", 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.chardev("dev/console", 5, 1)
    data = archive.bytes()
    assert data.startswith(b"070701") and len(data) % 512 == 0 and b"TRAILER!!!" in data
    entries = guest.read_cpio(data + guest.Cpio().bytes())      # concatenation is fine
    assert entries["bin/x"] == (stat.S_IFREG | 0o755, b"abc")
    assert entries["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox")
    assert stat.S_ISCHR(entries["dev/console"][0])
    # the device numbers are in the header: rdevmajor/rdevminor (fields 10 and 11)
    at = data.index(b"dev/console") - 110
    assert int(data[at + 78:at + 86], 16) == 5 and int(data[at + 86:at + 94], 16) == 1


def test_the_base_initramfs_has_busybox_modules_in_order_and_init(tmp_path):
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF busybox")
    path = tmp_path / "initramfs.cpio"
    guest.build_base_initramfs(path, busybox, [("9pnet", b"A"), ("9p", b"B")])
    entries = guest.read_cpio(path.read_bytes())
    assert entries["bin/busybox"] == (stat.S_IFREG | 0o755, b"\x7fELF busybox")
    assert entries["lib/modules/9pnet.ko"][1] == b"A"
    assert entries["etc/kit-modules"][1] == b"9pnet\n9p\n"
    mode, init = entries["init"]
    assert mode & 0o111 and init.startswith(b"#!/bin/busybox sh")
    assert stat.S_ISCHR(entries["dev/console"][0])


@needs_real
@pytest.mark.parametrize("kernel", REAL, ids=lambda k: k.package)
def test_the_cached_initramfs_of_a_real_package(kernel):
    entries = guest.read_cpio(Path(kernel.initramfs).read_bytes())
    assert entries["etc/kit-modules"][1].decode().split() == kernel.modules
    for module in kernel.modules:
        assert entries[f"lib/modules/{module}.ko"][1][:4] == b"\x7fELF"   # uncompressed
    # a busybox of the kernel's own architecture
    assert q.is_static_elf_bytes(entries["bin/busybox"][1],
                                 q.MACHINES[kernel.architecture].elf_machine)


def test_the_init_script_mounts_runs_and_powers_off():
    init = guest.init_script()
    assert 'insmod "/lib/modules/$m.ko"' in init
    assert "trans=virtio,version=9p2000.L,ro," in init       # the host root, read-only
    for needed in ("mount -t proc proc $R/proc", "mount -t sysfs sysfs $R/sys",
                   "mount -t devtmpfs devtmpfs $R/dev", "tmpfs $R/tmp", '"$KIT_OUT_TAG"',
                   "chroot $R /bin/sh /tmp/.kit-run.sh", guest.EXIT_FILE, "poweroff -f",
                   'say "kit start', 'say "kit exit $code', f'echo "{guest.MARK} $*"'):
        assert needed in init, needed
    # /tmp is a tmpfs before the writable share is mounted (out_dir may be under /tmp)
    assert init.index("tmpfs $R/tmp") < init.index('"$KIT_OUT_TAG"')
    for shell in ("dash", "bash", "busybox"):
        exe = shutil.which(shell)
        if exe:
            cmd = [exe, "sh", "-n"] if shell == "busybox" else [exe, "-n"]
            checked = subprocess.run(cmd, input=init, text=True, capture_output=True,
                                     check=False)
            assert checked.returncode == 0, (shell, checked.stderr)


def test_the_run_script_quotes_paths_and_sets_the_environment(tmp_path):
    repo = Path("/srv/my kit")
    script = guest.run_script(repo, ["/usr/bin/python3", "-m", "kit", "run", "-k", "a and b"],
                              {"KIT_TARGET_NAME": "debian 6.1", "KIT_PLATFORM": "linux"})
    assert "cd '/srv/my kit' || exit 2" in script
    assert "export KIT_TARGET_NAME='debian 6.1'" in script
    assert "export HOME=/tmp" in script and "export TMPDIR=/tmp" in script
    assert "exec /usr/bin/python3 -m kit run -k 'a and b' 2>&1" in script
    conf = guest.run_conf(Path("/tmp/out dir"))
    assert "KIT_OUT='/tmp/out dir'" in conf and f"KIT_ROOT_TAG={guest.ROOT_TAG}" in conf
    # executing the script (with a harmless command) proves the quoting
    out = tmp_path / "env.txt"
    script = guest.run_script(tmp_path, ["/bin/sh", "-c", f"echo $KIT_TARGET_NAME > {out}"],
                              {"KIT_TARGET_NAME": "it's $HOME"})
    subprocess.run(["/bin/sh", "-c", script], check=True, timeout=30)
    assert out.read_text() == "it's $HOME\n"


def test_a_checkout_under_tmp_is_kept_visible_over_the_tmpfs():
    assert guest.keep_path(Path("/tmp/x/main")) == Path("/tmp/x/main").resolve()
    assert guest.keep_path(Path("/work/main")) is None
    assert guest.keep_path(Path("/tmpfoo/main")) is None


def test_files_under_the_guests_tmpfs_mounts_are_not_seen_by_it():
    assert guest.seen_by_guest(Path("/root/.cache/kit/kernels/p_1/tree/boot/config-6.1"),
                               Path("/work/main"))
    assert not guest.seen_by_guest(Path("/tmp/cache/kernels/p_1/tree/boot/config-6.1"),
                                   Path("/work/main"))
    assert not guest.seen_by_guest(Path("/run/user/0/config"), Path("/work/main"))
    # the checkout under /tmp is bind-mounted back, and with it what lies inside it
    assert guest.seen_by_guest(Path("/tmp/x/main/cache/config"), Path("/tmp/x/main"))
    assert not guest.seen_by_guest(Path("/tmp/x/other/config"), Path("/tmp/x/main"))


def test_the_run_initramfs_is_the_base_plus_this_runs_files(tmp_path):
    base = tmp_path / "base.cpio"
    base.write_bytes(guest.Cpio().bytes())
    run = tmp_path / "run.cpio"
    guest.write_run_initramfs(run, base, tmp_path / "out", REPO, ["kit", "run"], {"A": "1"})
    entries = guest.read_cpio(run.read_bytes())
    assert b"exec kit run 2>&1" in entries["kit/run.sh"][1]
    assert f"KIT_OUT={tmp_path / 'out'}".encode() in entries["kit/run.conf"][1]


# -- qemu, accelerators, availability -------------------------------------------------------


def test_the_qemu_command_line():
    cmd = q.qemu_command("qemu-system-x86_64", accel="tcg", kernel=Path("/k/vmlinux"),
                         initrd=Path("/r/i.cpio"), out_dir=Path("/o"), memory_mb=2048)
    joined = " ".join(cmd)
    assert cmd[cmd.index("-accel") + 1] == "tcg" and cmd[cmd.index("-cpu") + 1] == "qemu64"
    assert cmd[cmd.index("-smp") + 1] == "1" and cmd[cmd.index("-m") + 1] == "2048"
    assert "-drive" not in cmd                   # no Python image: no disk at all
    assert "-no-reboot" in cmd and "-kernel /k/vmlinux" in joined
    append = cmd[cmd.index("-append") + 1]
    assert "console=ttyS0" in append and "panic=-1" in append
    fsdevs = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-fsdev"]
    assert f"id={guest.ROOT_TAG},path=/," in fsdevs[0] and "readonly=on" in fsdevs[0]
    assert "path=/o," in fsdevs[1] and "readonly" not in fsdevs[1]
    kvm = q.qemu_command("q", accel="kvm", kernel=Path("k"), initrd=Path("i"),
                         out_dir=Path("/o"))
    assert kvm[kvm.index("-cpu") + 1] == "host"
    # two vCPUs under TCG: one host thread each; the Python image as a read-only disk
    two = q.qemu_command("q", accel="tcg", kernel=Path("k"), initrd=Path("i"),
                         out_dir=Path("/o"), cpus=2, image=Path("/c/py,1.img"))
    assert two[two.index("-accel") + 1] == "tcg,thread=multi" and "-smp 2" in " ".join(two)
    assert two[two.index("-drive") + 1] == ("file=/c/py,,1.img,if=none,id=kitpython,"
                                            "format=raw,readonly=on")
    assert two[two.index("-device", two.index("-drive")) + 1] == (
        "virtio-blk-pci,drive=kitpython")


def test_the_plan_tries_kvm_then_tcg_and_pvh_then_bzimage(monkeypatch):
    monkeypatch.setattr(q, "kvm_unusable", lambda: None)
    auto = q.QemuTarget("t", {"package": "p", "accel": "auto"})
    assert auto.plan()[0] == [("kvm", "pvh"), ("kvm", "bzimage"), ("tcg", "pvh"),
                              ("tcg", "bzimage")]
    assert q.QemuTarget("t", {"package": "p", "accel": "tcg"}).plan() == (
        [("tcg", "pvh"), ("tcg", "bzimage")], "the target asks for tcg")
    monkeypatch.setattr(q, "kvm_unusable", lambda: "/dev/kvm: No such file or directory")
    attempts, note = auto.plan()
    assert attempts == [("tcg", "pvh"), ("tcg", "bzimage")] and "/dev/kvm" in note
    bz = q.QemuTarget("t", {"package": "p", "accel": "tcg", "boot": "bzimage"})
    assert bz.plan()[0] == [("tcg", "bzimage")]


def test_unavailable_names_the_missing_piece(monkeypatch, tmp_path):
    monkeypatch.setattr(q.platform, "machine", lambda: "aarch64")
    assert "x86_64" in q.QemuTarget("t", {"package": "p"}).unavailable()
    monkeypatch.setattr(q.platform, "machine", lambda: "x86_64")
    reason = q.QemuTarget("t", {"package": "p", "qemu": "no-such-qemu-x"}).unavailable()
    assert "qemu-system-x86" in reason
    if shutil.which("qemu-system-x86_64"):
        dynamic = q.QemuTarget("t", {"package": "p", "busybox": sys.executable})
        assert "busybox-static" in dynamic.unavailable()
    assert "package" in q.QemuTarget("t", {}).unavailable()
    assert "accel" in q.QemuTarget("t", {"package": "p", "accel": "xen"}).unavailable()
    assert "cpus must be auto or a number" in q.QemuTarget(
        "t", {"package": "p", "cpus": "two"}).unavailable()
    assert "python_image must be" in q.QemuTarget(
        "t", {"package": "p", "python_image": "yes"}).unavailable()


def test_static_elf_detection(tmp_path):
    assert not q.is_static_elf(Path(sys.executable))     # a dynamic executable
    static = tmp_path / "static"
    static.write_bytes(elf_with_notes([]))
    assert q.is_static_elf(static)
    assert not q.is_static_elf(tmp_path / "missing")


def test_the_target_files_are_qemu_targets_with_the_documented_keys():
    for name in ("debian-6.1", "debian-6.12"):
        target = load_target(REPO / "targets" / f"{name}.yaml")
        assert isinstance(target, q.QemuTarget) and target.name == name
        assert {"package", "timeout", "accel", "memory_mb", "description"} <= set(target.spec)
        assert target.spec["accel"] in ("auto", "kvm", "tcg")
    versions = kernels.parse_apt_show(
        "Package: linux-image-6.1.0-56-amd64-unsigned\nVersion: 6.1.192-2\n\n"
        "Package: linux-image-6.1.0-56-cloud-amd64-unsigned\nVersion: 6.1.192-2\n\n"
        "Package: linux-image-6.12.117+deb12-amd64-unsigned\nVersion: 6.12.117-1~deb12u1\n\n"
        "Package: linux-image-6.12.117+deb12-rt-amd64-unsigned\nVersion: 6.12.117-1~deb12u1\n")
    pick = {name: kernels.pick_newest(load_target(REPO / "targets" / f"{name}.yaml")
                                      .spec["package"], versions)[0]
            for name in ("debian-6.1", "debian-6.12")}
    assert pick == {"debian-6.1": "linux-image-6.1.0-56-amd64-unsigned",
                    "debian-6.12": "linux-image-6.12.117+deb12-amd64-unsigned"}


# -- run(): exit codes, timeouts, failures, against a fake qemu -----------------------------

FAKE_QEMU = """#!{python}
import os, sys, time, json
args = sys.argv[1:]
if args == ["--version"]:
    print("QEMU emulator version 0.0 (fake)")
    sys.exit(0)
out = next(a.split("path=")[1].split(",")[0] for a in args if "id=kitout" in a)
mode = os.environ.get("FAKE_QEMU_MODE", "ok")
if mode == "nokvm" and args[args.index("-accel") + 1] == "kvm":
    print("qemu-system-x86_64: error: failed to set MSR 0x10a", flush=True)
    sys.exit(134)
print("[    0.000000] Linux version 6.1.0-fake", flush=True)
if mode == "noinit":
    print("Kernel panic - not syncing: VFS: Unable to mount root fs", flush=True)
    sys.exit(0)
print("KIT-INIT: up 0.40 6.1.0-fake", flush=True)
print("KIT-INIT: kit start 0.50", flush=True)
# the run script's own check of the share, on the host's paths (the guest's are the same),
# the rest of it (the `exec` of kit run) left out
from kit.matrix.qemu_initramfs import read_cpio
import subprocess
script = read_cpio(open(args[args.index("-initrd") + 1], "rb").read())["kit/run.sh"][1]
script = script.decode().rsplit("exec ", 1)[0] + "exit 0\\n"
if mode == "noshare":
    os.unlink(os.path.join(out, "{share_token}"))   # as if the share were mounted elsewhere
check = subprocess.run(["/bin/sh", "-c", script], stdout=subprocess.PIPE, text=True)
print(check.stdout, end="", flush=True)
if check.returncode != 0:
    open(os.path.join(out, "{exit_file}"), "w").write(f"{{check.returncode}}\\n")
    print(f"KIT-INIT: kit exit {{check.returncode}} 0.60", flush=True)
    sys.exit(0)
if mode == "hang":
    time.sleep(120)
if mode == "badimage":
    print("[    0.55] EXT4-fs (vda): VFS: Can't find ext4 filesystem", flush=True)
    print("KIT-INIT: FAILED: mounting the kit's Python image (/dev/vda)", flush=True)
    sys.exit(0)
print("KIT-INIT: imported 0.60", flush=True)       # what guest_phases.py prints
print("KIT-INIT: collected 0.65 3", flush=True)
print("KIT-INIT: tested 0.85", flush=True)
if mode != "noreport":
    open(os.path.join(out, "report.json"), "w").write(json.dumps({{"target": {{}}}}))
else:
    print("Traceback (most recent call last):\\nModuleNotFoundError: no kit", flush=True)
code = 1 if mode != "noreport" else 2
open(os.path.join(out, "{exit_file}"), "w").write(str(code) + "\\n")
print(f"KIT-INIT: kit exit {{code}} 0.90", flush=True)
print("[    0.950000] reboot: Power down", flush=True)
"""


def prepared_kernel(directory: Path, package="linux-image-6.1.0-1-amd64-unsigned",
                    version="6.1.1-1") -> kernels.PreparedKernel:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("vmlinuz", "vmlinux", "initramfs.cpio"):
        (directory / name).write_bytes(guest.Cpio().bytes() if name.endswith("cpio")
                                       else b"x")
    return kernels.PreparedKernel(
        package=package, version=version, release="6.1.0-1-amd64", directory=str(directory),
        vmlinuz=str(directory / "vmlinuz"), vmlinux=str(directory / "vmlinux"),
        vmlinux_note="", initramfs=str(directory / "initramfs.cpio"), modules=["9p"],
        modules_source="modinfo")


@pytest.fixture
def fake_target(tmp_path, monkeypatch):
    def make(mode: str, accel: str = "tcg", **spec) -> q.QemuTarget:
        qemu = tmp_path / "qemu-system-x86_64"
        qemu.write_text(FAKE_QEMU.format(python=sys.executable, exit_file=guest.EXIT_FILE,
                                         share_token=guest.SHARE_TOKEN))
        qemu.chmod(0o755)
        monkeypatch.setenv("FAKE_QEMU_MODE", mode)
        target = q.QemuTarget("fake", {"package": "p", "qemu": str(qemu), "accel": accel,
                                       **spec})
        target.kernel = prepared_kernel(kernels.kernels_dir() / "p_1")
        return target
    return make


def request(tmp_path, timeout=60.0) -> RunRequest:
    return RunRequest(repo=REPO, out_dir=tmp_path / "out", kit_args=["-k", "eventfd"],
                      timeout=timeout, log=tmp_path / "fake.log",
                      env={"KIT_TARGET_NAME": "fake", "KIT_PLATFORM": "linux"})


def test_a_run_returns_the_guests_exit_code_and_report(fake_target, tmp_path):
    result = fake_target("ok").run(request(tmp_path))
    assert result.status == "ran", result.reason
    assert result.exit_code == 1 and result.report == tmp_path / "out" / "report.json"
    meta = result.metadata
    assert meta["accel"] == "tcg" and meta["boot"] == "vmlinux PVH"
    assert meta["kernel_package"] == "linux-image-6.1.0-1-amd64-unsigned"
    assert meta["kernel_version"] == "6.1.1-1" and meta["guest_uptime_at_kit_start"] == 0.5
    assert meta["boot_seconds"] >= 0 and meta["run_seconds"] >= 0 and meta["qemu"]
    # the time split: the host's own timings, the guest's from the uptimes in its marks
    phases = meta["phases"]
    assert list(phases) == ["prepare", "boot", "setup", "python", "collect", "suite",
                            "report", "shutdown"]
    assert (phases["setup"], phases["python"], phases["collect"], phases["suite"],
            phases["report"]) == (0.1, 0.1, 0.1, 0.2, 0.1)
    assert meta["cpus"] == 1 and meta["jobs"] == "0"      # one vCPU: no xdist worker
    assert meta["qemu_cpu_seconds"] >= 0                  # read from /proc while it ran
    log = (tmp_path / "fake.log").read_text()
    assert "KIT-INIT: kit exit 1" in log and "-accel tcg" in log


def with_config(target: q.QemuTarget, text: str = "CONFIG_AIO=y\n") -> Path:
    """Give the fake prepared kernel a boot/config-<release>, as dpkg -x unpacks it."""
    path = Path(target.kernel.directory) / "tree" / "boot" / f"config-{target.kernel.release}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_the_guest_is_given_the_packages_kernel_config(fake_target, tmp_path, monkeypatch):
    target = fake_target("ok")
    config = with_config(target)
    assert target.kernel.config_file() == config
    req = request(tmp_path)
    req.out_dir.mkdir(parents=True)
    # the test cache lives under /tmp, which the guest covers: a copy on the writable share
    copy = req.out_dir / q.GUEST_CONFIG_COPY
    assert q.guest_kernel_config(target.kernel, req) == {"KIT_KERNEL_CONFIG": str(copy)}
    assert copy.read_text() == config.read_text()
    # run() puts it into the script the guest runs, beside the request's own variables
    scripts = []
    real_write = guest.write_run_initramfs
    monkeypatch.setattr(guest, "write_run_initramfs", lambda path, base, out_dir, repo,
                        command, env, token, **kw: scripts.append(env) or real_write(
                            path, base, out_dir, repo, command, env, token, **kw))
    assert target.run(req).status == "ran"
    assert scripts == [{"KIT_TARGET_NAME": "fake", "KIT_PLATFORM": "linux",
                        "KIT_KERNEL_CONFIG": str(copy),
                        "XDG_CACHE_HOME": str(req.out_dir / q.GUEST_CACHE),
                        "PYTEST_PLUGINS": "kit.matrix.guest_phases",
                        "KIT_GUEST_CONSOLE": "/dev/console"}]
    # a cache the guest sees (~/.cache/kit, the default) is named as it is
    monkeypatch.setattr(guest, "seen_by_guest", lambda path, repo: True)
    assert q.guest_kernel_config(target.kernel, req) == {"KIT_KERNEL_CONFIG": str(config)}


def test_the_guest_runs_the_machine_wide_behaviours(fake_target, tmp_path, monkeypatch):
    """The VM is the kit's own machine: its `kit run` gets --allow-machine-wide."""
    target = fake_target("ok")
    commands = []
    real_write = guest.write_run_initramfs
    monkeypatch.setattr(guest, "write_run_initramfs", lambda path, base, out_dir, repo,
                        command, env, token, **kw: commands.append(command) or real_write(
                            path, base, out_dir, repo, command, env, token, **kw))
    req = request(tmp_path)
    req.out_dir.mkdir(parents=True)
    assert target.run(req).status == "ran"
    assert [c[-1] for c in commands] == ["--allow-machine-wide"]


def test_the_guest_is_given_an_absolute_kernel_config_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KIT_CACHE", "relative-cache")
    assert kernels.cache_root() == tmp_path.resolve() / "relative-cache"
    target = q.QemuTarget("t", {"package": "p"})
    target.kernel = prepared_kernel(Path("relative-cache/kernels/p_1"))
    config = with_config(target)
    monkeypatch.setattr(guest, "seen_by_guest", lambda path, repo: True)
    req = request(tmp_path)
    assert q.guest_kernel_config(target.kernel, req) == {
        "KIT_KERNEL_CONFIG": str(config.resolve())}


def test_a_package_without_a_config_gives_the_guest_none(fake_target, tmp_path):
    target = fake_target("ok")
    assert target.kernel.config_file() is None
    assert q.guest_kernel_config(target.kernel, request(tmp_path)) == {}


def test_a_failed_kvm_boot_falls_back_to_tcg_and_is_remembered(fake_target, tmp_path,
                                                               monkeypatch):
    monkeypatch.setattr(q, "kvm_unusable", lambda: None)
    target = fake_target("nokvm", accel="auto")
    result = target.run(request(tmp_path))
    assert result.status == "ran" and result.metadata["accel"] == "tcg"
    assert [a.split(":")[0] for a in result.metadata["failed_attempts"]] == [
        "kvm/pvh", "kvm/bzimage"]
    attempts, note = target.plan()
    assert attempts == [("tcg", "pvh"), ("tcg", "bzimage")] and "failed before" in note
    # the Python image is for KVM guests: not for one that will boot under TCG anyway
    assert not target.kvm_first()


def test_a_guest_that_never_reaches_init_fails_with_the_console_tail(fake_target, tmp_path):
    result = fake_target("noinit", boot="pvh").run(request(tmp_path))
    assert result.status == "failed"
    assert "Unable to mount root fs" in result.reason and "did not boot" in result.reason


def test_no_report_is_a_failure_with_the_last_console_lines(fake_target, tmp_path):
    result = fake_target("noreport").run(request(tmp_path))
    assert result.status == "failed" and result.exit_code == 2
    assert "no report.json" in result.reason and "ModuleNotFoundError" in result.reason
    assert "\n" not in result.reason          # one line: it goes into matrix.md's table


def test_a_guest_without_the_hosts_share_stops_before_kit_run_and_says_why(fake_target,
                                                                             tmp_path):
    result = fake_target("noshare").run(request(tmp_path))
    assert result.status == "failed" and result.exit_code == 2
    assert result.reason.startswith(
        f"the host's output share is not mounted at {tmp_path / 'out'} in the guest; "
        f"no report.json"), result.reason
    assert not (tmp_path / "out" / guest.SHARE_TOKEN).exists()      # cleaned up


def test_a_relative_output_directory_reaches_the_guest_absolute(fake_target, tmp_path,
                                                                monkeypatch):
    # the bug this guards against: KIT_OUT=report-matrix/x made /init mount the share on
    # a path the chrooted `kit run` never wrote to, and --report report-matrix/x made it
    # write into the read-only root; minutes of running, nothing back
    monkeypatch.chdir(tmp_path)
    seen = []
    real_write = guest.write_run_initramfs
    monkeypatch.setattr(guest, "write_run_initramfs", lambda path, base, out_dir, repo,
                        command, env, token, **kw: seen.append((out_dir, command)) or
                        real_write(
                            path, base, out_dir, repo, command, env, token, **kw))
    req = RunRequest(repo=REPO, out_dir=Path("report-matrix/fake"), kit_args=[],
                     timeout=60, log=Path("fake.log"))
    result = fake_target("ok").run(req)
    assert result.status == "ran", result.reason
    [(out_dir, command)] = seen
    absolute = tmp_path.resolve() / "report-matrix" / "fake"
    assert out_dir == absolute and result.report == absolute / "report.json"
    assert command[command.index("--report") + 1] == str(absolute)


def test_the_run_script_checks_the_share_before_running_the_kit(tmp_path):
    out = tmp_path / "out dir"
    out.mkdir()
    marker = tmp_path / "ran"
    script = guest.run_script(tmp_path, ["/bin/sh", "-c", f"echo yes > '{marker}'"], {},
                              out, "t0ken")
    (out / guest.SHARE_TOKEN).write_text("t0ken")
    ok = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=30,
                        check=False)
    assert ok.returncode == 0 and marker.read_text() == "yes\n"
    marker.unlink()
    (out / guest.SHARE_TOKEN).write_text("another run's token")
    stale = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                           timeout=30, check=False)
    assert stale.returncode == 2 and not marker.exists()
    assert stale.stdout == (f"{guest.MARK} FAILED: the host's output share is not mounted "
                            f"at {out} in the guest\n")
    # where the report is to go cannot be written: stopped before the kit, saying so
    gone = tmp_path / "gone"
    script = guest.run_script(tmp_path, ["/bin/sh", "-c", f"echo yes > '{marker}'"], {},
                              gone, "")
    unwritable = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True,
                                timeout=30, check=False)
    assert unwritable.returncode == 2 and not marker.exists()
    assert unwritable.stdout == (f"{guest.MARK} FAILED: the output directory {gone} is not "
                                 f"writable in the guest\n")


def test_the_guest_is_never_given_a_relative_output_directory():
    with pytest.raises(ValueError, match="absolute"):
        guest.run_conf(Path("report-matrix/debian-6.1"))


def test_a_python_image_the_guest_cannot_mount_is_a_kit_failure(fake_target, tmp_path):
    result = fake_target("badimage").run(request(tmp_path))
    assert result.status == "failed" and result.exit_code is None
    assert result.reason.startswith("mounting the kit's Python image (/dev/vda); no exit "
                                    "code from the guest"), result.reason
    assert "Can't find ext4 filesystem" in result.reason


def test_a_guest_of_two_cpus_runs_two_workers(fake_target, tmp_path):
    req = request(tmp_path)
    req.cpus = 2
    result = fake_target("ok").run(req)
    assert result.metadata["cpus"] == 2 and result.metadata["jobs"] == "2"
    assert "-smp 2" in (tmp_path / "fake.log").read_text()
    # a target's own `cpus` and `jobs` win
    result = fake_target("ok", cpus=1, jobs=3).run(req)
    assert result.metadata["cpus"] == 1 and result.metadata["jobs"] == "3"


def test_a_run_past_its_timeout_is_killed(fake_target, tmp_path):
    start = time.monotonic()
    result = fake_target("hang").run(request(tmp_path, timeout=1))
    assert result.status == "timeout" and "in `kit run`" in result.reason
    assert time.monotonic() - start < 15


# -- the real thing -------------------------------------------------------------------------


@pytest.mark.skipif(os.environ.get("KIT_VM_TESTS") != "1",
                    reason="boots Debian's 6.1 kernel under QEMU, minutes under TCG: too slow "
                           "for every run; set KIT_VM_TESTS=1 to run it")
@pytest.mark.timeout(3600)
def test_debian_61_boots_and_runs_the_kit(tmp_path, monkeypatch):
    from helpers import boot_and_run

    monkeypatch.delenv("KIT_CACHE")          # the user's real cache: download once
    target, result, report = boot_and_run(REPO / "targets" / "debian-6.1.yaml",
                                          tmp_path / "debian-6.1")
    assert report["target"]["release"] == target.kernel.release == result.metadata[
        "kernel_release"]
    assert result.metadata["boot_seconds"] > 0


def test_the_guest_gets_the_hosts_cache_of_pages_and_validated_specs(tmp_path, monkeypatch):
    """Splitting the man pages and validating the specs took minutes under TCG: the guest's
    XDG_CACHE_HOME (on the writable share) starts with the host's results for both."""
    from kit.spec import validated
    from kit.spec.loader import spec_files

    repo = Path(__file__).resolve().parent.parent
    host_cache = tmp_path / "host-cache"
    (host_cache / "kit" / "coverage").mkdir(parents=True)
    (host_cache / "kit" / "coverage" / "eventfd.2.json").write_text("{}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(host_cache))
    request = RunRequest(repo=repo, out_dir=tmp_path / "out", kit_args=[], timeout=60,
                         log=tmp_path / "log")
    env = q.guest_page_cache(sys.executable, request)
    assert env == {"XDG_CACHE_HOME": str(tmp_path / "out" / q.GUEST_CACHE)}
    assert (tmp_path / "out" / q.GUEST_CACHE / "kit" / "coverage" / "eventfd.2.json").exists()
    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])    # as the guest sees it
    texts = [p.read_text() for p in spec_files(repo / "specs")]
    assert texts and all(validated.passed(text) for text in texts)
