"""Userlands built here from Debian packages: the running kernel through another ABI.

An i386 userland on an x86_64 kernel exercises the 32-bit compat system calls (other struct
layouts, 32-bit time_t, the *_time64 variants); another Debian release exercises another
glibc. An arm64 or s390x userland on an x86_64 machine runs under Debian's qemu-user
(registered with binfmt_misc for the run, kit.matrix.binfmt): qemu translates each call to the
host kernel, so such a target judges qemu-user's implementation of that ABI (other syscall
numbers, struct layouts, big-endian s390x), reported as platform `qemu-user`. Nothing is pulled from an image registry: the root filesystem is made with mmdebstrap
from the Debian archive, and the kit's Python dependencies are downloaded by the host's own
pip for the userland's platform, so the userland itself needs no network.

    name: debian-i386
    kind: userland
    suite: bookworm
    architecture: i386
    timeout: 3600
    # optional: archive (a mirror's URL), packages (more Debian packages), jobs,
    # run_args (pytest options for `kit run`, after --)

Prepared once and cached under $KIT_CACHE/userlands/<suite>-<architecture>-<digest>/:

    rootfs/        mmdebstrap --variant=apt: python3, python3-venv, and Debian packages that
                   stand in for wheels PyPI lacks on some architectures (PyYAML); the kit's
                   venv in /opt/kit-venv (with the system's site-packages)
    wheels/        the dependencies' wheels for the userland's platform
    .complete      written last

Before each run the checkout's kit is built into a wheel and installed into the venv
(seconds), so the userland runs the same kit and specs as the host; an unchanged wheel
(.kit-wheel: the digest of what it installs) is not installed again, and a changed one waits
until no run of the userland's kit (this target's, or a VM booted on this root file system
by the qemu target) holds its `.in-use` lock. A run is `kit run`
chrooted into the root filesystem in fresh mount and PID namespaces (unshare), with /proc,
/dev, a tmpfs /tmp and the report directory mounted in; none of it outlives the run. The
process runs under the architecture's personality (`setarch i686`), so the report names it;
under qemu-user the emulated machine is what uname says.

Adding an architecture: a row of ARCHITECTURES here, a syscall table in kit.adapter.arch,
and a targets/*.yaml file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from kit.engine.exclusive import lock_dir
from kit.matrix import binfmt, children
from kit.matrix.apt import ARCHIVE, suite_problem
from kit.matrix.base import RunRequest, RunResult, Target
from kit.matrix.qemu_kernel import cache_root

# Python distributions the userland takes from Debian instead of PyPI (no wheel for every
# architecture; Debian builds them everywhere)
FROM_DEBIAN = {"pyyaml": "python3-yaml"}


def _platforms(machine: str, *tags: str) -> tuple[str, ...]:
    return tuple(f"{tag}_{machine}" for tag in tags)


# Debian architecture -> the machines that run it natively, the qemu-user emulator that runs
# it elsewhere, pip's platform tags, the personality, and the distributions PyPI has no
# wheel of there (Debian's package instead)
ARCHITECTURES = {
    "i386": {"hosts": ("x86_64",), "setarch": "i686",
             "platforms": _platforms("i686", "manylinux_2_17", "manylinux2014", "manylinux_2_5",
                                     "manylinux1", "linux")},
    "amd64": {"hosts": ("x86_64",), "setarch": "x86_64",
              "platforms": _platforms("x86_64", "manylinux_2_17", "manylinux2014",
                                      "manylinux_2_5", "manylinux1", "linux")},
    "arm64": {"hosts": ("aarch64",), "qemu": "aarch64", "setarch": "aarch64",
              "platforms": _platforms("aarch64", "manylinux_2_28", "manylinux_2_17",
                                      "manylinux2014", "linux")},
    # MarkupSafe (Jinja2's) has no s390x wheel on PyPI
    "s390x": {"hosts": ("s390x",), "qemu": "s390x", "setarch": "s390x",
              "platforms": _platforms("s390x", "manylinux_2_28", "manylinux_2_17",
                                      "manylinux2014", "linux"),
              "from_debian": {"markupsafe": "python3-markupsafe"}},
}


def from_debian(architecture: str) -> dict[str, str]:
    """PyPI distribution -> the Debian package that stands in for it on `architecture`."""
    return {**FROM_DEBIAN, **ARCHITECTURES.get(architecture, {}).get("from_debian", {})}


BASE_PACKAGES = ["python3", "python3-venv", *FROM_DEBIAN.values()]
INSTALLED = ".kit-wheel"       # the digest of the kit's wheel installed in the venv
IN_USE_WAIT = 4 * 3600.0       # at most a target's run: then the reinstall gives up
VENV = "/opt/kit-venv"
DISTRIBUTION = "syscall-conformance-kit"


class UserlandError(Exception):
    """The userland could not be built or the kit not installed into it."""


def _run(cmd: list[str], log, timeout: float, **kw) -> None:
    print("$ " + shlex.join(cmd), file=log, flush=True)
    try:
        proc = children.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, **kw)
    except subprocess.TimeoutExpired:
        raise UserlandError(f"{cmd[0]} took over {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise UserlandError(f"{shlex.join(cmd[:3])} ... failed (exit {proc.returncode}); "
                            f"see {getattr(log, 'name', 'the log')}")


def _requirement_name(requirement: str) -> str:
    name = requirement.split(";")[0]
    for stop in "<>=!~[ (":
        name = name.split(stop)[0]
    return name.strip()


def kit_requirements(architecture: str = "amd64") -> list[str]:
    """The kit's runtime requirements that come from PyPI (not from Debian packages)."""
    wanted = []
    debian = from_debian(architecture)
    for requirement in metadata.requires(DISTRIBUTION) or []:
        if "extra ==" in requirement:
            continue
        if _requirement_name(requirement).lower() in debian:
            continue
        wanted.append(requirement.split(";")[0].replace(" ", ""))
    return wanted


def pinned_closure(architecture: str) -> list[str]:
    """NAME==VERSION of the kit's runtime requirements and everything they need, as installed
    here, less what Debian provides on `architecture`: fetched one by one without pip's
    resolver, which would insist on a wheel of a dependency that Debian stands in for
    (Jinja2's MarkupSafe on s390x)."""
    debian = {_normal(name) for name in from_debian(architecture)}
    pinned: dict[str, str] = {}
    todo = [Requirement(r) for r in metadata.requires(DISTRIBUTION) or []]
    while todo:
        requirement = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = _normal(requirement.name)
        if name in pinned or name in debian:
            continue
        dist = metadata.distribution(requirement.name)
        pinned[name] = dist.version
        todo += [Requirement(r) for r in dist.requires or []]
    return sorted(f"{name}=={version}" for name, version in pinned.items())


def wheel_digest(wheel: Path) -> str:
    """What a wheel installs (each member's name and bytes), not when it was built: the
    same checkout gives the same digest, whatever the zip's timestamps."""
    digest = hashlib.sha256()
    with zipfile.ZipFile(wheel) as archive:
        for name in sorted(archive.namelist()):
            digest.update(name.encode() + b"\0" + archive.read(name) + b"\0")
    return digest.hexdigest()


def _normal(name: str) -> str:
    return name.lower().replace("_", "-")


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory` (from /proc/self/mountinfo, whose octal
    escapes are undone)."""
    root = str(directory)
    try:
        with open("/proc/self/mountinfo") as fh:
            points = [line.split()[4].encode().decode("unicode_escape") for line in fh]
    except OSError:
        return []
    return [p for p in points if p == root or p.startswith(root + "/")]


def _clean_env(**extra: str) -> dict:
    """An environment for commands inside the userland: nothing of the host's (its PIP_*
    settings name host paths), only what the command needs."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": "/root", "LANG": "C.UTF-8", **extra}


class UserlandTarget(Target):
    kind = "userland"

    @property
    def architecture(self) -> str:
        return str(self.spec.get("architecture", "amd64"))

    @property
    def suite(self) -> str:
        return str(self.spec.get("suite", "bookworm"))

    def packages(self) -> list[str]:
        debian = [p for p in from_debian(self.architecture).values() if p not in BASE_PACKAGES]
        return BASE_PACKAGES + debian + [str(p) for p in self.spec.get("packages", [])]

    @property
    def qemu(self) -> str | None:
        """The qemu-user emulator this machine needs for the architecture (None: native)."""
        arch = ARCHITECTURES.get(self.architecture, {})
        return None if os.uname().machine in arch.get("hosts", ()) else arch.get("qemu")

    def requirements(self) -> list[str]:
        return kit_requirements(self.architecture)

    def emulation(self):
        """The block within which the userland's programs run: under qemu-user through
        binfmt_misc where the architecture is foreign here, else as they are."""
        return binfmt.registered(self.qemu) if self.qemu else contextlib.nullcontext()

    def directory(self) -> Path:
        # the wheels are fetched once per directory, so the kit's requirements are part of it
        recipe = json.dumps([self.suite, self.architecture, self.packages(),
                             self.spec.get("archive", ARCHIVE), self.requirements()])
        digest = hashlib.sha256(recipe.encode()).hexdigest()[:12]
        return cache_root() / "userlands" / f"{self.suite}-{self.architecture}-{digest}"

    def unavailable(self) -> str | None:
        arch = ARCHITECTURES.get(self.architecture)
        if arch is None:
            return (f"architecture {self.architecture!r} has no table here (one of "
                    f"{', '.join(sorted(ARCHITECTURES))})")
        if suite_problem(self.suite):
            return suite_problem(self.suite)
        machine = os.uname().machine
        if machine not in arch["hosts"] and "qemu" not in arch:
            return f"a {self.architecture} userland does not run natively on {machine}"
        if os.geteuid() != 0:
            return "building and entering a userland (mmdebstrap, chroot, unshare) needs root"
        if self.qemu and binfmt.problem(self.qemu):
            return (f"a {self.architecture} userland runs under qemu-user here: "
                    f"{binfmt.problem(self.qemu)}")
        for tool, package in (("mmdebstrap", "mmdebstrap"), ("unshare", "util-linux"),
                              ("chroot", "coreutils")):
            if shutil.which(tool) is None and not (tool == "mmdebstrap" and self._complete()):
                return f"{tool} is not installed (Debian package: {package})"
        if not (self.repo_root() / "pyproject.toml").exists():
            return "the kit installs itself into the userland from a source checkout"
        return None

    def _complete(self) -> bool:
        return (self.directory() / ".complete").exists()

    # -- prepare ---------------------------------------------------------------------------

    def prepare(self, log: Path) -> None:
        directory = self.directory()
        directory.parent.mkdir(parents=True, exist_ok=True)
        # One build of a userland at a time: a second kit (a replay, a test) waits, then
        # finds it complete, instead of building into the same directory.
        with open(log, "a") as out, self.emulation(), \
                open(directory.parent / f".{directory.name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self._complete():
                self._build(directory, out)
            self._install_kit(directory, out)

    def _build(self, directory: Path, out) -> None:
        mounted = _mounts_under(directory)
        if mounted:
            # an interrupted build (mmdebstrap's setup) can leave mounts behind: deleting
            # through one would reach outside the userland, so say so instead
            raise UserlandError(f"an earlier build left mounts under {directory}: "
                                f"{', '.join(mounted)}; unmount them (umount -R) and run again")
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        rootfs = directory / "rootfs"
        archive = str(self.spec.get("archive", ARCHIVE))
        _run(["mmdebstrap", "--variant=apt", f"--architectures={self.architecture}",
              f"--include={','.join(self.packages())}", self.suite, str(rootfs),
              f"deb {archive} {self.suite} main"], out, timeout=3600)
        self._populate(directory, out)

    def _populate(self, directory: Path, out) -> None:
        """The kit's venv and its dependencies' wheels in a fresh root filesystem."""
        rootfs = directory / "rootfs"
        _run(["chroot", str(rootfs), "/usr/bin/python3", "-m", "venv",
              "--system-site-packages", VENV], out, timeout=600, env=_clean_env())
        python = subprocess.run(
            ["chroot", str(rootfs), "/usr/bin/python3", "-c",
             "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, check=True, timeout=60, env=_clean_env())
        version = python.stdout.strip()
        wheels = directory / "wheels"
        wheels.mkdir()
        platforms = [a for p in ARCHITECTURES[self.architecture]["platforms"]
                     for a in ("--platform", p)]
        requirements = self.requirements()
        # the host's pip (its index, proxy and certificates) fetches for the userland the
        # versions installed here
        _run([sys.executable, "-m", "pip", "download", "-q", "--dest", str(wheels),
              "--only-binary=:all:", "--no-deps", *platforms, "--python-version", version,
              "--implementation", "cp", *pinned_closure(self.architecture)], out,
             timeout=1800)
        self._pip(directory, ["install", "-q", "--no-index", "--find-links", "/wheels",
                              *requirements], out)
        (directory / ".complete").write_text(json.dumps(
            {"suite": self.suite, "architecture": self.architecture, "python": version}))

    def _pip(self, directory: Path, args: list[str], out) -> None:
        """pip inside the userland, with the cached wheels mounted at /wheels."""
        rootfs = directory / "rootfs"
        (rootfs / "wheels").mkdir(exist_ok=True)
        script = (f"mount --bind {shlex.quote(str(directory / 'wheels'))} "
                  f"{shlex.quote(str(rootfs / 'wheels'))} && exec chroot "
                  f"{shlex.quote(str(rootfs))} {VENV}/bin/python -m pip "
                  f"--disable-pip-version-check {shlex.join(args)}")
        _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], out,
             timeout=1800, env=_clean_env())

    def _install_kit(self, directory: Path, out) -> None:
        (directory / "wheels").mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory / "wheels") as tmp:
            # setuptools builds in the checkout (build/, *.egg-info): one build at a time,
            # whichever userland target or `kit matrix` asks
            with open(directory.parent / ".kit-wheel.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", tmp,
                      str(self.repo_root())], out, timeout=900)
            wheel = next(Path(tmp).glob("*.whl"))
            digest = wheel_digest(wheel)
            record = directory / INSTALLED
            if record.exists() and record.read_text() == digest:
                # the same kit is installed already: a run of another target (a VM booted
                # on this root) may be reading it, so it is left alone
                print(f"the kit in {VENV} is this checkout's already", file=out, flush=True)
                return
            with self._exclusive(out):
                record.unlink(missing_ok=True)
                self._pip(directory, ["install", "-q", "--no-index", "--no-deps",
                                      "--force-reinstall",
                                      f"/wheels/{Path(tmp).name}/{wheel.name}"], out)
                record.write_text(digest)

    def _in_use_lock(self) -> Path:
        directory = self.directory()
        return directory.parent / f".{directory.name}.in-use"

    @contextlib.contextmanager
    def in_use(self):
        """Within this block the userland's kit is being run (here, or by a VM booted on
        its root): another target's prepare does not reinstall it meanwhile."""
        self._in_use_lock().parent.mkdir(parents=True, exist_ok=True)
        with open(self._in_use_lock(), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            yield

    @contextlib.contextmanager
    def _exclusive(self, out, timeout: float = IN_USE_WAIT):
        """No run of this userland's kit while the kit is reinstalled: waits for the runs
        of other targets, for at most `timeout` seconds."""
        with open(self._in_use_lock(), "a") as lock:
            deadline = time.monotonic() + timeout
            said = False
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise UserlandError(
                            f"another target has been running the kit of {self.directory()} "
                            f"for over {timeout:.0f} s; its kit cannot be replaced meanwhile"
                            ) from None
                    if not said:
                        print("waiting for another target's run of this userland's kit",
                              file=out, flush=True)
                        said = True
                    time.sleep(1)
            yield

    @staticmethod
    def repo_root() -> Path:
        import kit

        return Path(kit.__file__).resolve().parent.parent

    # -- run -------------------------------------------------------------------------------

    def run(self, request: RunRequest) -> RunResult:
        rootfs = self.directory() / "rootfs"
        request.out_dir.mkdir(parents=True, exist_ok=True)
        kit = [f"{VENV}/bin/python", "-m", "kit", "run", "--report", "/out", "-n",
               str(self.spec.get("jobs", "1")), *request.kit_args]
        # pytest options of the target's own (`run_args: [--kit-limit, "300"]`: emulation
        # is slow enough for a long model program to pass the default hard limit)
        if self.spec.get("run_args"):
            kit += ["--", *(str(a) for a in self.spec["run_args"])]
        # under qemu-user the personality is the emulated machine already (qemu's uname)
        personality = [] if self.qemu else [
            "setarch", ARCHITECTURES[self.architecture]["setarch"]]
        inside = [*personality, "env", "-i",
                  *(f"{k}={v}" for k, v in _clean_env(**request.env).items()), *kit]
        r, o = shlex.quote(str(rootfs)), shlex.quote(str(request.out_dir))
        # the locks of `exclusive:` behaviours (setting the realtime clock cancels every
        # cancel-on-set timer on the machine) are the host's, shared with every other run
        locks = Path(lock_dir())
        inner_locks = shlex.quote(f"{rootfs}/tmp/{locks.name}")
        script = (
            "set -e; "
            # the root bound onto itself: inside the chroot / is then a mount point, as
            # on a machine, so a spec can make it private in a namespace of its own
            f"mount --bind {r} {r}; "
            f"mount -t proc proc {r}/proc; mount --rbind /dev {r}/dev; "
            f"mount -t tmpfs tmpfs {r}/tmp; mkdir -p {r}/out; mount --bind {o} {r}/out; "
            f"mkdir -m 0755 {inner_locks}; "
            f"mount --bind {shlex.quote(str(locks))} {inner_locks}; "
            f"cd {r}; exec chroot {r} {shlex.join(inside)}")
        cmd = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork",
               "--kill-child", "sh", "-c", script]
        how = (f"chroot into a Debian {self.suite} {self.architecture} userland "
               f"(mmdebstrap), fresh mount and PID namespaces")
        metadata = {"userland": str(rootfs)}
        if self.qemu:
            metadata["qemu"] = binfmt.qemu_version(self.qemu)
            how += f", every program under qemu-user ({metadata['qemu']}) through binfmt_misc"
        metadata["how"] = how
        with self.emulation(), self.in_use():
            return self.run_command(request, cmd, metadata, env=_clean_env())
