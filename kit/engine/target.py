"""The system under test, described once per run: kernel, architecture, privileges, libc."""

from __future__ import annotations

import glob
import os
import platform
from dataclasses import dataclass, field, fields

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from kit.adapter import arch
from kit.engine import kernel_config
from kit.engine.kernel_config import KernelConfig
from kit.engine.patch_level import (
    PatchLevel,
    override_from_env,
    read_signature,
    resolve,
)
from kit.native import race as native_race
from kit.spec import changes
from kit.spec.model import Change

# include/uapi/linux/capability.h
CAPABILITIES = {name: bit for bit, name in enumerate((
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"))}




# set by --allow-machine-wide (kit run, the pytest plugin), inherited by workers and checkers
ALLOW_MACHINE_WIDE_ENV = "KIT_ALLOW_MACHINE_WIDE"


def effective_capabilities() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _libc() -> str:
    name, version = platform.libc_ver()
    if name:
        return f"{name} {version}"
    if glob.glob("/lib/ld-musl-*.so.1"):
        return "musl"
    return "unknown"


@dataclass
class Target:
    release: str
    version_string: str
    arch: str
    capabilities: int
    libc: str
    platform: str = "linux"     # "gvisor", "qemu", ... set by the matrix runner
    uid: int = field(default_factory=os.getuid)
    name: str = ""              # the matrix target's name, when run by `kit matrix`
    # The kernel version to judge by, set by the target where the kernel does not tell
    # (gVisor reports a fixed 4.4.0 while implementing a recent ABI) or tells it in a way
    # the kit does not read: version gates and kernel variants use it before anything else.
    kernel_override: str = ""
    # Ubuntu's /proc/version_signature, which carries the upstream version its uname lacks.
    version_signature: str = ""
    # The kernel's build options, for `applies: kernel_config`. A Target built by hand (tests,
    # a described old kernel) has an unknown config: behaviours that need an option run.
    config: KernelConfig = field(default_factory=KernelConfig.unknown, repr=False,
                                 compare=False)
    # The machine is the kit's own (a VM target, or --allow-machine-wide): behaviours that
    # change a sysctl (`machine_wide:`) may run.
    allow_machine_wide: bool = False

    @classmethod
    def current(cls) -> "Target":
        """This process's system. Raises BadKernelVersion when the environment's override
        is no version: judging by a guess would hide the mistake."""
        uts = os.uname()
        override, _ = override_from_env(os.environ)
        return cls(release=uts.release, version_string=uts.version, arch=arch.ARCH,
                   capabilities=effective_capabilities(), libc=_libc(),
                   platform=os.environ.get("KIT_PLATFORM", "linux"),
                   name=os.environ.get("KIT_TARGET_NAME", ""),
                   kernel_override=override,
                   version_signature=read_signature(),
                   config=kernel_config.current(),
                   allow_machine_wide=os.environ.get(ALLOW_MACHINE_WIDE_ENV) == "1")

    @property
    def patch_level(self) -> PatchLevel:
        """The version gates judge by, and where it was read (see patch_level)."""
        return resolve(self.release, self.version_string, self.version_signature,
                       self.kernel_override)

    @property
    def kernel(self) -> Version:
        return self.patch_level.version

    def in_range(self, spec: str) -> bool:
        return SpecifierSet(spec).contains(self.kernel, prereleases=True)

    def carries(self, change: Change) -> bool:
        return changes.carried(change, self.kernel)

    def gate_holds(self, gate) -> bool:
        """Whether a gate (an applies, a `differs:` variant or a known deviation: anything
        with `kernel`, `since` and `before`) holds for this kernel; every part must."""
        return not (gate.kernel and not self.in_range(gate.kernel)) \
            and not (gate.since and not self.carries(gate.since)) \
            and not (gate.before and self.carries(gate.before))

    def has_capability(self, name: str) -> bool:
        return bool(self.capabilities >> CAPABILITIES[name] & 1)

    def describe(self) -> dict:
        # the options themselves (thousands) stay out of report.json: only where they came from
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "config"}
        level = self.patch_level
        out["kernel"] = str(level.version)
        out["kernel_source"] = level.source
        out["kernel_config"] = self.config.describe()
        return out


def not_applicable_reason(behaviour, target: Target) -> str | None:
    """Why a behaviour does not apply to this target, or None if it does."""
    applies = behaviour.applies
    if applies.kernel and not target.in_range(applies.kernel):
        return f"kernel {target.kernel} is outside {applies.kernel}"
    if applies.since and not target.carries(applies.since):
        return f"kernel {target.kernel} lacks {changes.describe(applies.since)}"
    if applies.before and target.carries(applies.before):
        return f"kernel {target.kernel} carries {changes.describe(applies.before)}"
    if applies.arch and target.arch not in applies.arch:
        return f"architecture {target.arch} is not one of {', '.join(applies.arch)}"
    for name in applies.syscalls:
        if not arch.has_syscall(name):
            return f"{target.arch} has no {name} system call"
    missing = target.config.missing(applies.kernel_config)
    if missing:
        return (f"kernel built without {kernel_config.requirement_text(missing[0])} "
                f"(from {target.config.source})")
    for symbol in applies.without_kernel_config:
        if target.config.enabled(symbol):
            return f"kernel built with {symbol} (from {target.config.source})"
    if _uses(behaviour.steps, NATIVE_OPERATIONS):
        reason = native_race.unavailable_reason()
        if reason:
            return reason
    if behaviour.machine_wide and not target.allow_machine_wide:
        return (f"not run: changes machine-wide state ({', '.join(behaviour.machine_wide)}); "
                f"run with --allow-machine-wide where the machine is the kit's own")
    for cap in applies.capabilities:
        if cap not in CAPABILITIES:
            return f"unknown capability {cap}"
        if not target.has_capability(cap):
            return f"needs {cap}, which this process lacks"
    for cap in applies.without_capabilities:
        if cap in CAPABILITIES and target.has_capability(cap):
            return f"must run without {cap}, which this process has"
    return None


# Operations run by a native helper the kit builds with cc (kit.native): without one the
# behaviour cannot run here, which says nothing about the kernel.
NATIVE_OPERATIONS = frozenset({"race_loop"})


def _uses(steps, names: frozenset) -> bool:
    return any(step.action in names or _uses(step.substeps, names) for step in steps)
