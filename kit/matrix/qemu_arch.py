"""The machines the qemu target boots: one row per Debian architecture.

An amd64 kernel boots as it always did (qemu-system-x86_64, `-machine pc`, the host's root
over 9p). Another architecture's kernel boots in that architecture's emulator, and needs
three things of its own: a static busybox of its architecture for the initramfs (Debian's
busybox-static for it, fetched and unpacked like the kernel package), a root file system of
its architecture (the arm64 userland of userland.py, shared read-only over 9p), and apt
pointed at that architecture's package lists (ForeignApt: the kit's private configuration
with APT::Architecture set; the machine's own apt and dpkg architectures stay untouched).

    $KIT_CACHE/apt/<suite>-<architecture>/          the private apt configuration
    $KIT_CACHE/busybox/<package>_<version>_<arch>/  the .deb, tree/ (dpkg -x), .complete
"""

from __future__ import annotations

import fcntl
import platform
from dataclasses import dataclass
from pathlib import Path

from kit.matrix.apt import PrivateApt
from kit.matrix.qemu_kernel import KernelError, _say, cache_root, fetch_deb, unpack_deb


@dataclass(frozen=True)
class Machine:
    """How QEMU emulates one architecture, and what its guest needs."""

    architecture: str          # Debian's name: amd64, arm64
    uname: str                 # the guest's `uname -m`
    elf_machine: str           # pyelftools' e_machine of its programs (busybox)
    qemu: str                  # the system emulator
    qemu_package: str          # the Debian package that has it
    board: tuple[str, ...]     # -machine and what the board needs
    tcg_cpu: str               # the CPU model under TCG
    console: str               # the serial console's device in the guest
    boot_methods: tuple[str, ...]   # in the order tried ("pvh", "bzimage", "image")
    kvm_hosts: tuple[str, ...]      # host machines where KVM can run this guest


MACHINES = {
    "amd64": Machine(
        architecture="amd64", uname="x86_64", elf_machine="EM_X86_64",
        qemu="qemu-system-x86_64", qemu_package="qemu-system-x86",
        board=("-machine", "pc"),
        # Emulated, the plain x86-64 model costs less than `max` (measured in a guest here:
        # 30 forks of a 60 MB process that touch its pages 16-21 s against 26-29 s, the
        # whole test 44 against 57 CPU seconds): fewer features to emulate (glibc and the
        # kernel pick AVX2 and `rep movsb` copies for `max`, which TCG runs slowly).
        tcg_cpu="qemu64", console="ttyS0", boot_methods=("pvh", "bzimage"),
        kvm_hosts=("x86_64", "amd64")),
    "arm64": Machine(
        architecture="arm64", uname="aarch64", elf_machine="EM_AARCH64",
        qemu="qemu-system-aarch64", qemu_package="qemu-system-arm",
        # virt: a PL011 serial console and a generic PCI host bridge, both built into
        # Debian's arm64 kernel, so the same virtio-pci 9p devices as on x86 serve
        board=("-machine", "virt"),
        # cortex-a57 (ARMv8.0) over `max`: see docs/matrix.md for the measurement
        tcg_cpu="cortex-a57", console="ttyAMA0", boot_methods=("image",),
        kvm_hosts=("aarch64", "arm64")),
}


def machine_for(architecture: str) -> Machine | None:
    return MACHINES.get(architecture)


def host_machine() -> str:
    return platform.machine().lower()


def native(machine: Machine) -> bool:
    """The guest's architecture is this host's: KVM may run it, and the host's own root
    (its programs) can be the guest's."""
    return host_machine() in machine.kvm_hosts


# -- apt for another architecture ---------------------------------------------------------


class ForeignApt(PrivateApt):
    """The kit's private apt configuration for one suite, reading one other architecture's
    package lists: APT::Architecture is given as an option, never configured."""

    def __init__(self, suite: str, root: Path, architecture: str, **kw):
        super().__init__(suite, root, **kw)
        self.architecture = architecture

    def options(self) -> list[str]:
        return [*super().options(), "-o", f"APT::Architecture={self.architecture}",
                "-o", f"APT::Architectures={self.architecture}"]


# -- a static busybox of the guest's architecture ----------------------------------------------


BUSYBOX_PACKAGE = "busybox-static"


def busybox_dir() -> Path:
    return cache_root() / "busybox"


def foreign_busybox(version: str, architecture: str, apt_options: list[str],
                    log=None) -> Path:
    """Debian's static busybox for `architecture` (`version` as apt resolved it): downloaded
    and unpacked once into the cache, never installed."""
    directory = busybox_dir() / f"{BUSYBOX_PACKAGE}_{version}_{architecture}"
    binary = directory / "tree" / "bin" / "busybox"
    if (directory / ".complete").exists() and binary.is_file():
        return binary
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ((directory / ".complete").exists() and binary.is_file()):
            deb = fetch_deb(BUSYBOX_PACKAGE, version, directory, apt_options, log)
            unpack_deb(deb, directory / "tree", log)
            if not binary.is_file():
                raise KernelError(f"{deb.name} has no bin/busybox")
            (directory / ".complete").write_text("")
    _say(log, f"busybox for {architecture}: {binary}")
    return binary
