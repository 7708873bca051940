"""Other Debian kernels, booted under QEMU: the same spec set on Linux 6.1, 6.12, ...

A target file names a Debian kernel package (exact, or a regular expression for the newest
matching one). The package is downloaded with `apt-get download` and unpacked with `dpkg -x`
into a cache, never installed (see qemu_kernel.py). The VM boots the ELF vmlinux extracted
from vmlinuz directly (PVH entry), or the bzImage if that fails, with a busybox initramfs
(qemu_initramfs.py) that loads the 9p-over-virtio modules, mounts the host's root read-only
over 9p, mounts a writable 9p share on the run's out_dir, chroots and runs `kit run` there,
with KIT_KERNEL_CONFIG naming the package's boot/config-* (for `applies: kernel_config`).

As many vCPUs as the runner's share of the host's cores (RunRequest.cpus: one each when two
VMs run side by side on two cores), multi-threaded under TCG, with `kit run -n` to match (no
xdist at one vCPU), and `memory_mb` (default 2048) of memory. KVM is used when /dev/kvm works
and the target allows it (`accel: auto` or `kvm`); otherwise, or when a KVM boot fails, TCG
(software emulation) with the plain qemu64 CPU model. The time of each phase (phases.py) and
qemu's CPU seconds go into the result's metadata; docs/matrix.md has the measurements.

    name: debian-6.1
    kind: qemu
    package: linux-image-6\\.1\\.0-[0-9]+-amd64-unsigned
    accel: auto          # auto | kvm | tcg
    memory_mb: 2048
    timeout: 3600
    # optional: suite (a Debian suite other than the machine's own, such as bullseye:
    #           apt then reads a private configuration for it, see apt.py), with archive
    #           (a mirror's URL) and security (false: no <suite>-security updates),
    #           boot (auto | pvh | bzimage), boot_timeout, cmdline, modules,
    #           cpus (auto | N), jobs (kit run -n; default: 0 at one vCPU, else N),
    #           python_image (auto: under KVM only | true | false; see qemu_image.py),
    #           qemu (binary), busybox (path to a static busybox),
    #           run_args (pytest options for the guest's `kit run`, after --),
    #           architecture (amd64 | arm64; see below), userland_archive,
    #           userland_packages (more Debian packages in that architecture's userland)

Another architecture's kernel (`architecture: arm64`, qemu_arch.py) boots in its own
emulator (qemu-system-aarch64 -machine virt, TCG) from its Image, with its own busybox
(Debian's busybox-static for it) and, as its root, the Debian userland of that architecture
that userland.py builds (the checkout's kit installed in its venv); `suite` is required, and
apt reads that architecture's lists through a private configuration of its own.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import io
import json
import os
import platform
import re
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from kit.matrix import children, guest_phases, phases, qemu_image
from kit.matrix import qemu_initramfs as guest
from kit.matrix import qemu_kernel as kernels
from kit.matrix.apt import ARCHIVE, AptError, PrivateApt
from kit.matrix.base import RunRequest, RunResult, Target
from kit.matrix.host import kit_command
from kit.matrix.qemu_arch import (
    BUSYBOX_PACKAGE,
    MACHINES,
    ForeignApt,
    Machine,
    foreign_busybox,
    host_machine,
    native,
)
from kit.report.atomic import write_atomic

QEMU = MACHINES["amd64"].qemu
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
KVM_GET_API_VERSION, KVM_CREATE_VM = 0xAE00, 0xAE01
BOOT_METHODS = {"pvh": "vmlinux PVH", "bzimage": "bzImage", "image": "Image"}
GUEST_OUT = Path("/out")       # where a userland root's guest mounts the writable share
# a VM that printed nothing at all by then did not start its kernel (a PVH entry that is
# not taken, a KVM that cannot run this guest): give up on that way of booting
FIRST_OUTPUT_TIMEOUT = {"kvm": 30.0, "tcg": 90.0}
BOOT_TIMEOUT = {"kvm": 120.0, "tcg": 600.0}    # until /init runs; `boot_timeout` overrides
# the CPU model under TCG, per architecture: see qemu_arch.MACHINES for why
TCG_CPU = MACHINES["amd64"].tcg_cpu


# -- host capabilities ------------------------------------------------------------------------


def is_static_elf_bytes(head: bytes, machine: str | None = None) -> bool:
    """An ELF64 executable with no PT_INTERP: runs in an initramfs without a libc; of
    `machine` (pyelftools' e_machine, EM_X86_64) if given, so that no busybox of another
    architecture lands in a guest's initramfs."""
    try:
        elf = ELFFile(io.BytesIO(head))
        return (elf.elfclass == 64 and (machine is None or elf["e_machine"] == machine)
                and not any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments()))
    except (ELFError, struct.error, ValueError):
        return False


def is_static_elf(path: Path, machine: str | None = None) -> bool:
    try:
        with open(path, "rb") as f:
            return is_static_elf_bytes(f.read(1 << 16), machine)
    except OSError:
        return False


def find_busybox(configured: str | None = None, machine: str | None = None) -> Path | None:
    for candidate in ([configured] if configured else
                      [*BUSYBOX_CANDIDATES, shutil.which("busybox")]):
        if candidate and Path(candidate).is_file() and is_static_elf(Path(candidate),
                                                                      machine):
            return Path(candidate)
    return None


def kvm_unusable() -> str | None:
    """None if /dev/kvm opens and creates a VM, else why not."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"/dev/kvm: {exc.strerror}"
    try:
        if fcntl.ioctl(fd, KVM_GET_API_VERSION) != 12:
            return "/dev/kvm speaks an unknown KVM API version"
        vm = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        os.close(vm)
    except OSError as exc:
        return f"/dev/kvm cannot create a VM: {exc.strerror}"
    finally:
        os.close(fd)
    return None


_versions: dict[str, str] = {}


def qemu_version(qemu: str) -> str:
    if qemu not in _versions:
        try:
            out = subprocess.run([qemu, "--version"], capture_output=True, text=True,
                                 check=False, timeout=30).stdout
        except OSError:
            out = ""
        _versions[qemu] = out.splitlines()[0].strip() if out else "unknown"
    return _versions[qemu]


# -- the qemu command line --------------------------------------------------------------------


def kernel_cmdline(extra: str = "", console: str = "ttyS0") -> str:
    """Serial console; a panic reboots at once, which -no-reboot turns into qemu exiting."""
    return " ".join(p for p in (f"console={console}", "panic=-1", "rdinit=/init", extra)
                    if p)


def _opt(path: Path) -> str:
    """A path inside a qemu -option list, where a comma must be doubled."""
    return str(path).replace(",", ",,")


def qemu_command(qemu: str, *, accel: str, kernel: Path, initrd: Path, out_dir: Path,
                 memory_mb: int = 2048, cmdline: str = "", root: Path = Path("/"),
                 cpus: int = 1, image: Path | None = None,
                 machine: Machine = MACHINES["amd64"]) -> list[str]:
    """`cpus` vCPUs (under TCG one host thread each), no display, no network: the guest's
    root (the host's, or a userland's; read-only) and out_dir (writable) as two virtio-9p
    shares, the Python image (if any) as a read-only virtio disk, the serial console on
    stdout; the board, CPU model and console of the guest's architecture (`machine`)."""
    if accel == "tcg" and cpus > 1:
        accel = "tcg,thread=multi"
    disk = ["-drive", f"file={_opt(image)},if=none,id=kitpython,format=raw,readonly=on",
            "-device", "virtio-blk-pci,drive=kitpython"] if image else []
    return [
        qemu, *machine.board, "-accel", accel,
        "-cpu", "host" if accel == "kvm" else machine.tcg_cpu,
        "-smp", str(cpus), "-m", str(memory_mb),
        "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
        "-serial", "stdio", "-no-reboot",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", kernel_cmdline(cmdline, machine.console),
        "-fsdev", (f"local,id={guest.ROOT_TAG},path={_opt(root)},security_model=none,"
                   f"readonly=on,multidevs=remap"),
        "-device", f"virtio-9p-pci,fsdev={guest.ROOT_TAG},mount_tag={guest.ROOT_TAG}",
        "-fsdev", f"local,id={guest.OUT_TAG},path={_opt(out_dir)},security_model=none",
        "-device", f"virtio-9p-pci,fsdev={guest.OUT_TAG},mount_tag={guest.OUT_TAG}",
        *disk,
    ]


def cpu_seconds(pid: int) -> float | None:
    """User and system CPU time of a running process (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


# -- following the serial console -------------------------------------------------------------


class Console:
    """Copies the VM's console into the log and notes when the guest's marks go by."""

    def __init__(self, stream, log, start: float):
        self.stream, self.log, self.start = stream, log, start
        self.first_output: float | None = None
        self.marks: dict[str, tuple[float, str]] = {}   # "up", "kit start", ... -> (t, line)
        self.tail: collections.deque[str] = collections.deque(maxlen=60)
        self.thread = threading.Thread(target=self._pump, name="kit-qemu-console",
                                       daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        for raw in iter(self.stream.readline, b""):
            now = time.monotonic()
            if self.first_output is None:
                self.first_output = now
            line = raw.decode("utf-8", "replace").replace("\r", "").rstrip("\n")
            self.log.write(line + "\n")
            self.log.flush()
            self.tail.append(line)
            at = line.find(guest.MARK)
            if at != -1:
                words = line[at + len(guest.MARK):].split()
                if words[:2] in (["kit", "start"], ["kit", "exit"]):
                    key = " ".join(words[:2])
                elif words:
                    key = words[0].rstrip(":").lower()
                else:
                    continue
                self.marks.setdefault(key, (now, line[at:]))

    def mark(self, key: str) -> float | None:
        return self.marks[key][0] if key in self.marks else None

    def last_lines(self, n: int = 8) -> list[str]:
        lines = [line.strip() for line in self.tail if line.strip()]
        return lines[-n:]

    def join(self) -> None:
        self.thread.join(timeout=10)


def _uptime(console: Console, key: str) -> float | None:
    """The guest's /proc/uptime that /init printed after a mark ("kit start 3.04")."""
    if key not in console.marks:
        return None
    line = console.marks[key][1]
    found = re.search(r"(\d+\.\d+)", line[line.find(key) + len(key):])
    return float(found.group(1)) if found else None


# -- the guest's kernel config ---------------------------------------------------------------


GUEST_CONFIG_COPY = ".kernel-config"


def guest_kernel_config(kernel: kernels.PreparedKernel, request: RunRequest,
                        guest_out: Path | None = None) -> dict:
    """KIT_KERNEL_CONFIG for the guest's `kit run`: the booted package's boot/config-*, so
    `applies: kernel_config` is judged by the guest kernel's options. Without it the guest
    would look in /proc/config.gz (Debian kernels have none) and the host's /boot.
    `guest_out`: the guest's root is a userland, which has none of the host's files, and
    it mounts the writable share there."""
    config = kernel.config_file()
    if config is None:
        return {}
    config = config.resolve()      # the guest's `kit run` has another cwd
    if guest_out is not None or not guest.seen_by_guest(config, request.repo):
        # a cache under /tmp or /run is covered by the guest's tmpfs: hand over a copy on
        # the writable share, which the guest mounts at the same path (or at guest_out)
        copy = request.out_dir / GUEST_CONFIG_COPY
        write_atomic(copy, Path(config).read_text())
        config = (guest_out or request.out_dir) / GUEST_CONFIG_COPY
    return {"KIT_KERNEL_CONFIG": str(config)}


def guest_kit_command(command: list[str], run_args: list[str]) -> list[str]:
    """The guest's `kit run`: --allow-machine-wide among kit run's own options (before a
    `--`, where a replay's pytest options start), the target's run_args among pytest's."""
    own, rest = (command[:command.index("--")], command[command.index("--") + 1:]) \
        if "--" in command else (command, [])
    rest = [*rest, *run_args]
    # the guest is the kit's own machine: its sysctls may change (each is restored)
    return [*own, "--allow-machine-wide", *(["--", *rest] if rest else [])]


# -- the checkout, byte-compiled on the host ----------------------------------------------------


def byte_compile(python: str, repo: Path, log=None) -> None:
    """The kit's .pyc files written beside it, as its first import on the host would: the
    guest (which reads the checkout over 9p and cannot write there) then compiles nothing."""
    try:
        proc = subprocess.run([python, "-m", "compileall", "-q", str(repo / "kit")],
                              capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        kernels._say(log, f"the kit is not byte-compiled: {exc}")
        return
    if proc.returncode != 0:
        kernels._say(log, f"the kit is not byte-compiled: {proc.stdout.strip()[-200:]}")


# -- the man pages' sentences, split on the host -----------------------------------------------


GUEST_CACHE = ".kit-cache"      # on the writable share: XDG_CACHE_HOME of the guest's run


def guest_page_cache(python: str, request: RunRequest, log=None) -> dict:
    """XDG_CACHE_HOME for the guest's `kit run`, holding the host's cache of the man pages'
    sentences: the report's coverage section needs them, and rendering and splitting the
    pages in the guest took minutes under TCG (a second here). The guest sees the same page
    files (the host's root) and the same kit, so the cache's keys match there."""
    from kit.coverage.pages import _cache_dir

    if not any(_cache_dir().glob("*.json")):
        try:    # fills the host's cache, as any `kit run` or `kit coverage` here does
            subprocess.run([python, "-m", "kit", "coverage", "--json"], cwd=request.repo,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600,
                           check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            kernels._say(log, f"the man pages' sentences are left to the guest: {exc}")
            return {}
    # a stale page (another man-pages, another splitter) is split again in the guest
    pages = sorted(_cache_dir().glob("*.json"))
    target = request.out_dir / GUEST_CACHE / "kit" / "coverage"
    target.mkdir(parents=True, exist_ok=True)
    for page in pages:
        shutil.copy2(page, target / page.name)
    handed = guest_spec_cache(request)
    return {"XDG_CACHE_HOME": str(request.out_dir / GUEST_CACHE)} if pages or handed else {}


def guest_spec_cache(request: RunRequest) -> bool:
    """Which of the checkout's spec texts passed the schema (kit.spec.validated), in the
    guest's cache on the writable share: validating them took minutes under TCG. The
    guest's kit is this one (the checkout, or its wheel in a userland), so the names
    match there. False if there was nothing to hand over."""
    from kit.spec import validated
    from kit.spec.loader import load_text, spec_files

    texts = [path.read_text() for path in spec_files(request.repo / "specs")]
    for text in texts:
        if not validated.passed(text):
            load_text(text, "?")            # as the host's own runs would, once
    return validated.hand_over(texts, request.out_dir / GUEST_CACHE) > 0


# -- the target -------------------------------------------------------------------------------


class BootFailed(Exception):
    """This way of booting (accel, method) did not get the guest's /init running."""


class QemuTarget(Target):
    kind = "qemu"

    def __init__(self, name: str, spec: dict):
        super().__init__(name, spec)
        self.kernel: kernels.PreparedKernel | None = None
        self.prepare_seconds = 0.0       # resolving, fetching, unpacking, building (host)
        self.image: qemu_image.GuestImage | None = None
        self.image_note = ""             # why there is no image (the guest reads 9p)
        self.root: guest.GuestRoot | None = None    # a userland's root; None: the host's

    # settings
    @property
    def architecture(self) -> str:
        """Debian's name of the kernel's architecture (amd64, arm64)."""
        return str(self.spec.get("architecture", "amd64"))

    @property
    def machine(self) -> Machine:
        return MACHINES.get(self.architecture, MACHINES["amd64"])

    @property
    def foreign(self) -> bool:
        """The guest's architecture is not this host's: TCG only, and the guest's root is
        a userland of its architecture instead of the host's root."""
        return not native(self.machine)

    @property
    def qemu(self) -> str | None:
        return shutil.which(self.spec.get("qemu", self.machine.qemu))

    @property
    def python(self) -> str:
        """The interpreter the guest's `kit run` uses (as host.kit_command picks it)."""
        venv = Path(self.repo) / ".venv" / "bin" / "python"
        return str(venv) if venv.exists() else sys.executable

    def cpus(self, share: int) -> int:
        """vCPUs: the target's `cpus`, else its share of the host's cores."""
        setting = self.spec.get("cpus", "auto")
        return max(1, share if setting == "auto" else int(setting))

    @property
    def accel_setting(self) -> str:
        return str(self.spec.get("accel", "auto")).lower()

    def userland(self):
        """The userland target whose root file system is the guest's root (a foreign
        architecture's guest cannot run the host's programs): the same suite and
        architecture as the kernel, built and cached by userland.py."""
        from kit.matrix.userland import UserlandTarget

        spec = {"suite": str(self.spec.get("suite", "bookworm")),
                "architecture": self.architecture}
        if "userland_archive" in self.spec:
            spec["archive"] = str(self.spec["userland_archive"])
        if self.spec.get("userland_packages"):
            # more than the kit needs (a C compiler for the native race executor): a root
            # file system of its own, not the qemu-user target's
            spec["packages"] = list(self.spec["userland_packages"])
        userland = UserlandTarget(f"{self.name} (userland)", spec)
        userland.repo = self.repo
        return userland

    def unavailable(self) -> str | None:
        machine = host_machine()
        if self.architecture not in MACHINES:
            return (f"architecture {self.architecture!r} has no machine here (one of "
                    f"{', '.join(sorted(MACHINES))})")
        if self.architecture == "amd64" and not native(self.machine):
            return (f"the qemu target boots Debian amd64 kernels on an x86_64 host; this host "
                    f"is {machine}")
        if not self.spec.get("package"):
            return "the target file names no kernel `package`"
        if self.accel_setting not in ("auto", "kvm", "tcg"):
            return f"accel must be auto, kvm or tcg, not {self.accel_setting!r}"
        cpus = self.spec.get("cpus", "auto")
        if cpus != "auto" and not (isinstance(cpus, int) and not isinstance(cpus, bool)
                                   and cpus >= 1):
            return f"cpus must be auto or a number of vCPUs (1 or more), not {cpus!r}"
        if self.spec.get("python_image", "auto") not in ("auto", True, False):
            return (f"python_image must be auto, true or false, not "
                    f"{self.spec['python_image']!r}")
        if self.qemu is None:
            return (f"{self.spec.get('qemu', self.machine.qemu)} is not installed "
                    f"(Debian package: {self.machine.qemu_package})")
        if self.foreign:
            return self._foreign_problem()
        if find_busybox(self.spec.get("busybox"), self.machine.elf_machine) is None:
            return ("no static busybox for the guest's initramfs "
                    "(Debian package: busybox-static)")
        if self.accel_setting == "kvm" and kvm_unusable():
            return f"accel: kvm, but {kvm_unusable()}"
        if not (shutil.which("apt-get") and shutil.which("dpkg")) \
                and not kernels.cached_kernels(str(self.spec["package"])):
            return "apt-get and dpkg are needed to fetch Debian kernel packages"
        return None

    def _foreign_problem(self) -> str | None:
        """Why a guest of another architecture than the host's cannot run here."""
        arch = self.architecture
        if self.accel_setting == "kvm":
            return f"accel: kvm, but an {arch} guest cannot use KVM on a {host_machine()} host"
        if not self.spec.get("suite"):
            return (f"an {arch} kernel comes through the kit's private apt configuration: "
                    f"the target file must name its `suite` (bookworm)")
        if self.spec.get("boot", "auto") not in ("auto", *self.machine.boot_methods):
            return (f"boot must be auto or {', '.join(self.machine.boot_methods)} for an "
                    f"{arch} kernel, not {self.spec['boot']!r}")
        extra = self.spec.get("userland_packages", [])
        if not (isinstance(extra, list) and all(isinstance(p, str) for p in extra)):
            return f"userland_packages must be a list of Debian package names, not {extra!r}"
        if self.spec.get("busybox") and not is_static_elf(Path(self.spec["busybox"]),
                                                          self.machine.elf_machine):
            return (f"busybox {self.spec['busybox']} is not a static {arch} executable")
        if not (shutil.which("apt-get") and shutil.which("dpkg")) \
                and not kernels.cached_kernels(str(self.spec["package"])):
            return "apt-get and dpkg are needed to fetch Debian kernel packages"
        problem = self.userland().unavailable()
        if problem:
            return f"the guest's root is a Debian {arch} userland, and here {problem}"
        return None

    # -- prepare: resolve, download, unpack, extract, build the initramfs (all cached)

    @property
    def private_apt(self) -> PrivateApt | None:
        """The target's own apt configuration when it names a suite (None: the system's)."""
        suite = self.spec.get("suite")
        if not suite:
            return None
        settings = {"archive": str(self.spec.get("archive", ARCHIVE)),
                    "security": bool(self.spec.get("security", True))}
        if self.foreign:
            # another architecture's package lists, kept apart from the host's
            return ForeignApt(str(suite), kernels.cache_root() / "apt" /
                              f"{suite}-{self.architecture}", self.architecture, **settings)
        return PrivateApt(str(suite), kernels.cache_root() / "apt" / str(suite), **settings)

    def apt_options(self, log=None) -> list[str]:
        """apt's options for this target, the suite's lists fetched first if stale."""
        apt = self.private_apt
        if apt is None:
            return []
        try:
            apt.update(log)
        except AptError as exc:
            if apt.age() is None:
                raise kernels.KernelError(str(exc)) from None
            kernels._say(log, f"{exc}; using the lists fetched before")
        return apt.options()

    def resolve(self, log=None, *, update_system: bool = True) -> tuple[str, str]:
        """(package, version): the exact package, or the newest matching the pattern;
        `update_system: False` never refreshes the system's own package lists."""
        pattern = str(self.spec["package"])
        found = None
        if shutil.which("apt-cache"):
            options = self.apt_options(log)
            found = kernels.pick_newest(pattern, kernels.apt_candidates(pattern, options))
            if found is None and not options and update_system and os.geteuid() == 0 \
                    and shutil.which("apt-get"):
                kernels._say(log, "no package matches; apt-get update, then again")
                subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False,
                               timeout=900)
                found = kernels.pick_newest(pattern, kernels.apt_candidates(pattern))
        if found is None:
            cached = kernels.cached_kernels(pattern)
            if cached:
                kernels._say(log, "apt knows no matching package; using the cached one")
                return cached[0].package, cached[0].version
            where = (f"Debian {self.spec['suite']} (the kit's private apt configuration)"
                     if self.private_apt else "the system's apt sources (is `apt-get update` "
                     "done? a target can name another release with `suite:`)")
            raise kernels.KernelError(
                f"no Debian package matches {pattern!r} (an exact name, or a Python regular "
                f"expression matched against whole names) in {where}")
        return found

    def fetch_problem(self) -> str | None:
        """Why the kernel cannot be fetched now (None: cached, or apt can fetch it)."""
        try:
            package, version = self.resolve(update_system=False)
            if self.foreign and not self.spec.get("busybox"):
                # the initramfs's busybox comes from the same lists
                self.busybox_version(self.apt_options())
            if any(k.version == version for k in kernels.cached_kernels(package)):
                return None
            kernels.download_uri(package, version, self.apt_options())
        except (kernels.KernelError, OSError, subprocess.SubprocessError) as exc:
            return str(exc)
        return None

    def prepare(self, log: Path) -> None:
        if self.kernel is not None:
            return
        began = time.monotonic()
        try:
            self._prepare(log)
        finally:
            self.prepare_seconds += time.monotonic() - began

    def busybox(self, log=None) -> Path:
        """A static busybox of the guest's architecture: the host's for a native guest,
        else Debian's busybox-static for that architecture (unless the target names one)."""
        if not self.foreign or self.spec.get("busybox"):
            found = find_busybox(self.spec.get("busybox"), self.machine.elf_machine)
            if found is None:
                raise kernels.KernelError("no static busybox of the guest's architecture")
            return found
        options = self.apt_options(log)
        return foreign_busybox(self.busybox_version(options), self.architecture, options,
                               log)

    def busybox_version(self, apt_options: list[str]) -> str:
        """The version of busybox-static apt would fetch for the guest's architecture."""
        found = kernels.pick_newest(BUSYBOX_PACKAGE,
                                    kernels.apt_candidates(BUSYBOX_PACKAGE, apt_options))
        if found is None:
            raise kernels.KernelError(f"apt knows no {BUSYBOX_PACKAGE} for "
                                      f"{self.architecture} in {self.spec.get('suite')}")
        return found[1]

    def _prepare(self, log: Path) -> None:
        with open(log, "a") as out:
            package, version = self.resolve(out)
            kernels._say(out, f"kernel package {package} {version}")
            self.kernel = kernels.prepare_kernel(
                package, version, self.busybox(out), out,
                extra_modules=list(self.spec.get("modules", [])),
                apt_options=self.apt_options(out), architecture=self.architecture)
            kernels._say(out, f"prepared in {self.kernel.directory}")
        if self.foreign:
            self._prepare_userland(log)
            return
        with open(log, "a") as out:
            wanted = self.spec.get("python_image", "auto")
            if wanted is False or wanted == "auto" and not self.kvm_first():
                self.image_note = (f"python_image: {str(wanted).lower()}"
                                   + (" (KVM only)" if wanted == "auto" else ""))
            elif not self.kernel.disk:
                self.image_note = ("the kernel package has no "
                                   + ", ".join(kernels.DISK_MODULES) + " to mount it")
            elif not (shutil.which("mke2fs") or Path("/sbin/mke2fs").exists()):
                self.image_note = "no mke2fs (Debian package: e2fsprogs)"
            else:
                self.image = qemu_image.ensure_image(self.python, out)
                kernels._say(out, f"guest image {self.image.path} ("
                             f"{'built' if self.image.built else 'cached'}, "
                             f"{self.image.files} files)")
            if self.image_note:
                kernels._say(out, f"no guest image, Python is read over 9p: "
                                  f"{self.image_note}")
            byte_compile(self.python, Path(self.repo), out)

    def _prepare_userland(self, log: Path) -> None:
        """The guest's root: the userland of the kernel's architecture, built once, with the
        checkout's kit installed into its venv as for the userland targets (its programs
        run under qemu-user here while it is built)."""
        from kit.matrix.userland import VENV

        userland = self.userland()
        userland.prepare(log)
        rootfs = userland.directory() / "rootfs"
        # the writable share's mount point: the guest cannot make it on a read-only root
        (rootfs / GUEST_OUT.relative_to("/")).mkdir(exist_ok=True)
        self.root = guest.userland_root(rootfs, VENV)
        self.image_note = f"the guest's root is the {self.architecture} userland {rootfs}"
        with open(log, "a") as out:
            kernels._say(out, f"guest root: {rootfs} (read-only over 9p)")

    # -- how to boot

    def kvm_first(self) -> bool:
        """The first boot will be a KVM one (not merely /dev/kvm opening: a host where KVM
        boots failed before boots TCG at once, see plan())."""
        attempts, _ = self.plan()
        return bool(attempts) and attempts[0][0] == "kvm"

    def plan(self) -> tuple[list[tuple[str, str]], str]:
        """The (accel, method) attempts in order, and a note on the accelerator choice."""
        setting, note = self.accel_setting, ""
        if self.foreign:
            accels = ["tcg"]
            note = f"{self.architecture} guest, {host_machine()} host: TCG only"
        elif setting == "tcg":
            accels, note = ["tcg"], "the target asks for tcg"
        elif setting == "kvm":
            accels = ["kvm"]
        else:
            reason = kvm_unusable()
            accels = ["kvm", "tcg"] if reason is None else ["tcg"]
            note = f"no kvm: {reason}" if reason else ""
        boot = str(self.spec.get("boot", "auto")).lower()
        methods = list(self.machine.boot_methods) if boot == "auto" else [boot]
        if self.kernel is not None and self.kernel.vmlinux is None and "bzimage" in methods:
            methods = [m for m in methods if m != "pvh"] or ["bzimage"]
        attempts = [(a, m) for a in accels for m in methods]
        failed = _probe_failures()
        known = [a for a in attempts if self._probe_key(*a) not in failed]
        skipped = [a for a in attempts if a not in known]
        if skipped and known:
            note = "; ".join(filter(None, [note, "skipped (failed before on this host): "
                                           + ", ".join(f"{a}/{m}" for a, m in skipped)]))
            attempts = known
        return attempts, note

    def _probe_key(self, accel: str, method: str) -> str:
        k = self.kernel
        return (f"{accel}/{method}/{k.package if k else '?'}_{k.version if k else '?'}/"
                f"{platform.release()}/{qemu_version(self.qemu or QEMU)}")

    # -- run

    def run(self, request: RunRequest) -> RunResult:
        start = time.monotonic()
        deadline = start + request.timeout
        if self.kernel is None:
            self.prepare(request.log)
        start -= self.prepare_seconds      # the run's duration counts its preparation
        kernel = self.kernel
        request.out_dir.mkdir(parents=True, exist_ok=True)
        attempts, note = self.plan()
        meta = {"kernel_package": kernel.package, "kernel_version": kernel.version,
                "kernel_release": kernel.release, "qemu": qemu_version(self.qemu),
                "memory_mb": int(self.spec.get("memory_mb", 2048)),
                "cpus": self.cpus(request.cpus), "modules": kernel.modules,
                "failed_attempts": [],
                "python_image": str(self.image.path) if self.image else self.image_note}
        if note:
            meta["accel_note"] = note
        meta["architecture"] = self.architecture
        if self.root is not None:
            meta["userland"] = str(self.root.share)
        meta["how"] = f"qemu, {kernel.package} {kernel.version}"
        # one vCPU: no xdist (a worker would import and collect everything a second time)
        jobs = str(self.spec.get("jobs", meta["cpus"] if meta["cpus"] > 1 else 0))
        meta["jobs"] = jobs
        run_args = [str(a) for a in self.spec.get("run_args", [])]
        if self.root is None:
            command = guest_kit_command(kit_command(request, str(request.out_dir), jobs),
                                        run_args)
            env = dict(request.env, **guest_kernel_config(kernel, request))
            env.update(guest_page_cache(self.python, request))
        else:
            # the userland's kit (the checkout's, installed as a wheel) from its venv; no
            # man pages there, so no sentences to hand over, only the validated specs
            command = guest_kit_command(
                [f"{self.root.venv_bin}/python", "-m", "kit", "run", "--report",
                 str(GUEST_OUT), "-n", jobs, *request.kit_args], run_args)
            env = dict(request.env, **guest_kernel_config(kernel, request, GUEST_OUT))
            if guest_spec_cache(request):
                env["XDG_CACHE_HOME"] = str(GUEST_OUT / GUEST_CACHE)
        env.update(PYTEST_PLUGINS=guest_phases.__name__,
                   **{guest_phases.CONSOLE_ENV: "/dev/console"})
        token = secrets.token_hex(16)
        token_file = request.out_dir / guest.SHARE_TOKEN
        write_atomic(token_file, token)
        # a userland another target (re)installs the kit into must not change under us
        in_use = self.userland().in_use() if self.root else contextlib.nullcontext()
        try:
            with in_use:
                return self._attempts(request, kernel, attempts, command, env, token, start,
                                      deadline, meta)
        finally:
            token_file.unlink(missing_ok=True)
            shutil.rmtree(request.out_dir / GUEST_CACHE, ignore_errors=True)

    def _attempts(self, request: RunRequest, kernel, attempts, command, env, token: str,
                  start: float, deadline: float, meta: dict) -> RunResult:
        exit_file = request.out_dir / guest.EXIT_FILE
        with tempfile.TemporaryDirectory(prefix="kit-qemu-") as tmp, \
                open(request.log, "a") as log:
            initrd = Path(tmp) / "initramfs.cpio"
            guest.write_run_initramfs(initrd, Path(kernel.initramfs),
                                      GUEST_OUT if self.root else request.out_dir,
                                      request.repo, command, env, token,
                                      image=self.image is not None, root=self.root)
            for i, (accel, method) in enumerate(attempts):
                last = i == len(attempts) - 1
                exit_file.unlink(missing_ok=True)
                (request.out_dir / "report.json").unlink(missing_ok=True)   # not a stale one
                meta.update(accel=accel, boot=BOOT_METHODS[method])
                kernels._say(log, f"booting {kernel.package} {kernel.version} "
                                  f"({BOOT_METHODS[method]}, {accel})")
                try:
                    outcome = self._boot(request, log, accel, method, initrd, deadline, meta)
                except BootFailed as exc:
                    meta["failed_attempts"].append(f"{accel}/{method}: {exc}")
                    kernels._say(log, f"boot failed ({accel}, {BOOT_METHODS[method]}): {exc}")
                    if accel == "kvm":
                        # KVM that cannot boot this guest on this host: skip it next time
                        _record_probe_failure(self._probe_key(accel, method), str(exc))
                    if last:
                        return RunResult(self.name, "failed", f"the VM did not boot: {exc}",
                                         duration=time.monotonic() - start, metadata=meta)
                    continue
                return self._result(outcome, request, start, meta)
        return RunResult(self.name, "failed", "no way to boot was left to try",
                         duration=time.monotonic() - start, metadata=meta)

    def _boot(self, request: RunRequest, log, accel: str, method: str, initrd: Path,
              deadline: float, meta: dict) -> dict:
        kernel = self.kernel
        image = Path({"pvh": kernel.vmlinux, "image": kernel.image}.get(method)
                     or kernel.vmlinuz)
        cmd = qemu_command(self.qemu, accel=accel, kernel=image, initrd=initrd,
                           out_dir=request.out_dir,
                           memory_mb=int(self.spec.get("memory_mb", 2048)),
                           cmdline=str(self.spec.get("cmdline", "")), cpus=meta["cpus"],
                           image=self.image.path if self.image else None,
                           root=self.root.share if self.root else Path("/"),
                           machine=self.machine)
        log.write("[kit qemu] " + " ".join(cmd) + "\n")
        log.flush()
        first_timeout = FIRST_OUTPUT_TIMEOUT[accel]
        boot_timeout = float(self.spec.get("boot_timeout", BOOT_TIMEOUT[accel]))
        t0 = time.monotonic()
        proc = children.start(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        console = Console(proc.stdout, log, t0)
        outcome = {"console": console, "timed_out": False}
        try:
            while True:
                used = cpu_seconds(proc.pid)     # the last reading before it exits
                if used is not None:
                    outcome["cpu"] = used
                try:
                    outcome["returncode"] = proc.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.monotonic()
                if now >= deadline:
                    outcome["timed_out"] = True
                    break
                if console.mark("up") is None:
                    if console.first_output is None and now - t0 > first_timeout:
                        raise BootFailed(f"no console output within {first_timeout:.0f}s")
                    if now - t0 > boot_timeout:
                        raise BootFailed(f"/init did not start within {boot_timeout:.0f}s; "
                                         + " | ".join(console.last_lines(3)))
        finally:
            if proc.poll() is None:
                children.kill_group(proc)
                proc.wait()
            children.forget(proc)
            outcome["exited"] = time.monotonic()
            console.join()
            proc.stdout.close()
        if console.mark("up") is None and not outcome["timed_out"]:
            raise BootFailed(f"qemu exited ({outcome.get('returncode')}) before /init ran: "
                             + " | ".join(console.last_lines(4)))
        outcome["t0"] = outcome["launched"] = t0
        return outcome

    def _result(self, outcome: dict, request: RunRequest, start: float,
                meta: dict) -> RunResult:
        console: Console = outcome["console"]
        t0 = outcome["t0"]
        began, ended = console.mark("kit start"), console.mark("kit exit")
        if began is not None:
            meta["boot_seconds"] = round(began - t0, 2)
            meta["guest_uptime_at_kit_start"] = _uptime(console, "kit start")
        if began is not None and ended is not None:
            meta["run_seconds"] = round(ended - began, 2)
        meta["how"] = (f"qemu {meta['accel']} ({meta['boot']}), {meta['kernel_package']} "
                       f"{meta['kernel_version']}")
        if self.root is not None:
            meta["how"] += (f", {self.machine.qemu} {' '.join(self.machine.board[1:])} "
                            f"-cpu {self.machine.tcg_cpu}, a Debian {self.architecture} "
                            f"userland as its root")
        duration = time.monotonic() - start
        uptimes = {key: _uptime(console, key) for key in console.marks}
        up = console.mark("up")
        exited, ended_host = outcome.get("exited"), console.mark("kit exit")
        if outcome.get("cpu") is not None:
            # what the VM cost the host, whatever else ran: wall times on a shared,
            # loaded machine say more about the others than about the VM
            meta["qemu_cpu_seconds"] = round(outcome["cpu"], 1)
        meta["phases"] = phases.split(
            {k: v for k, v in uptimes.items() if v is not None},
            prepare=outcome["launched"] - start,
            boot=up - t0 if up is not None else None,
            shutdown=exited - ended_host if exited and ended_host else None)
        if outcome["timed_out"]:
            where = "in `kit run`" if began is not None else "while booting"
            return RunResult(self.name, "timeout", f"no result within {request.timeout:.0f}s "
                             f"({where}); VM killed", duration=duration, metadata=meta)
        exit_file = request.out_dir / guest.EXIT_FILE
        exit_code = None
        try:
            exit_code = int(exit_file.read_text().strip())
        except (OSError, ValueError):
            pass
        report = request.out_dir / "report.json"
        if exit_code is not None and report.exists():
            return RunResult(self.name, "ran", report=report, exit_code=exit_code,
                             duration=duration, metadata=meta)
        why = "no report.json" if exit_code is not None else "no exit code from the guest"
        if "failed" in console.marks:
            # the guest said why (/init, or the share check before `kit run`): lead with it
            said = console.marks["failed"][1][len(guest.MARK):].strip()
            why = f"{said.removeprefix('FAILED:').strip()}; {why}"
        tail = " | ".join(console.last_lines(8))
        return RunResult(self.name, "failed",
                         f"{why} (qemu exit {outcome.get('returncode')}, guest exit "
                         f"{exit_code}); console: {tail}"[:1500],
                         exit_code=exit_code, duration=duration, metadata=meta)


# -- remembering ways of booting that fail on this host --------------------------------------


def _probe_file() -> Path:
    return kernels.kernels_dir() / "boot-failures.json"


def _probe_failures() -> dict:
    try:
        return json.loads(_probe_file().read_text())
    except (OSError, ValueError):
        return {}


def _record_probe_failure(key: str, reason: str) -> None:
    path = _probe_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = _probe_failures()
            data[key] = reason[:300]
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2) + "\n")
            tmp.replace(path)
    except OSError:
        pass
