"""What a spec may reach beyond its own objects: the policy, checked when a spec loads
(literal arguments) and again when a step runs (computed ones).

A spec runs as whoever runs the kit, often root in CI, and may come from someone else's
pull request. Its own objects (the eventfds, epolls, timerfds, signalfds, pipes and
sockets its steps create) are its to use as it likes; everything else is refused here
with a reason, and a refusal is a spec error, never a deviation of the kernel.

Audit of the registered operations (kit.registry.OPERATIONS, `kit schema`), by what they
reach besides the behaviour's own descriptors:

- Paths. `open_path` is the only operation that takes one. It reaches
  * the behaviour's scratch directory, as `scratch:NAME` (kit.adapter.scratch: a fresh
    directory per example, removed afterwards; resolved beneath it with openat2(2)
    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, so neither `..` nor a planted symbolic link
    gets out), and
  * the kernel interfaces in INTERFACES below, by canonical absolute path, read only
    except the stateless character devices. The opened descriptor's /proc/self/fd link
    must name the path asked for, so a symbolic link along the way cannot redirect it.
    No operation exists that changes a sysctl and restores it, so /proc/sys is read only.
  `open_temp_file` makes its file in the scratch directory (in $TMPDIR when none) under
  a name of its own, unlinked at once. `aio_read_notify` opens /dev/zero read only for its
  reads, a fixed path. `exec_probe` executes /bin/sh with a fixed script whose only
  variable is an integer descriptor number. The /proc readers (`fd_link`, `fdinfo`,
  `fd_is_open`, `fdinfo_mode`, `*_fdinfo`) read fixed files under /proc/self of the kit's
  own process; `reopen_directory` opens /proc/self/fd/N of the spec's own N with O_DIRECTORY
  only, so it yields at most another descriptor of a directory the spec already holds.
- Descriptors not the behaviour's. An `fd` argument naming an open descriptor that the
  behaviour did not create (the checker's result pipe, pytest's or xdist's pipes, the
  lock files) is refused (foreign_descriptors): a write there could forge a verdict or
  break the run. Numbers that are not open (-1, 1000000) stay allowed, for EBADF.
- Signals. `signal_thread`, `signal_process`, `sigqueue`, `sigqueue_thread` send only to
  the kit's own process or thread, and never the watchdog's signal. `fcntl` could make
  the kernel signal any process (F_SETOWN, F_SETOWN_EX with F_SETSIG and O_ASYNC), or
  pass an integer where the kernel reads a pointer (F_SETLK, F_GETLK, ...): only the
  commands in FCNTL_COMMANDS, which touch the descriptor or its own object, are allowed.
  `ioctl` passes no argument, and takes only the requests in IOCTL_REQUESTS: FIOCLEX and
  FIONCLEX (the descriptor's own close-on-exec flag) and one request that no file the
  kit creates handles (for ENOTTY). Any other request could reach a driver or
  filesystem with a NULL pointer where it expects one. `epoll_params_set` and
  `epoll_params_get` issue exactly EPIOCSPARAMS and EPIOCGPARAMS (EPOLL_IOCTLS) with a
  struct epoll_params of the kit's own, and only on an epoll fd (check_epoll_ioctl: its
  /proc/self/fd link is anon_inode:[eventpoll]) or a number that is not open (EBADF):
  on any other file the same request number could mean something else to its driver.
  They change the busy-poll settings of the behaviour's own epoll instance, nothing else.
- The realtime clock. `clock_settime_now` sets the clock to the value clock_gettime(2)
  returned one call before, so it is its own restore: the clock loses only the time
  between two consecutive calls (microseconds; a preemption there is the worst case), a
  process killed between them has changed nothing, and there is no saved state that a
  failure could leave unrestored. It runs only in a forked process, and the specs using
  it are `exclusive: [realtime_clock]` (kit.engine.exclusive) so that no other behaviour's
  cancel-on-set timer sees the change.
- Process state. `capability_drop`, `fd_limit_reach` (forked children only),
  `setrlimit_nofile`, `signal_install` and the signal masks change the calling process
  or thread, which is the forked checker (or an `in_child` child) and dies with it.
- The network. `tcp_pair` binds an ephemeral port on 127.0.0.1 and closes the listener at
  once: loopback only, nothing reachable from outside.
- Sysctls. `sysctl_set` writes only the sysctls in SYSCTLS, only those the behaviour
  declares in `machine_wide:`, and only while kit.engine.machine_wide holds them for it:
  which happens only when the run allows machine-wide changes (`--allow-machine-wide`,
  where the machine is the kit's own), after the original value was journalled, and is
  undone in a finally and, after a crash, at the start of the next run. Otherwise it is
  refused (check_sysctl). `real_uid_unused` (forked children only) gives the child a real
  uid no process uses, so a per-user count such as max_user_watches starts at 0.
- Time namespaces. `timens_for_children` (forked children only) unshares a time namespace
  for the calling process's future children and writes its own
  /proc/self/timens_offsets: only processes the behaviour forks afterwards see the shifted
  clocks, and the namespace dies with them.
- Mounts and namespaces (kit.adapter.mounts). `mount_namespace_private` unshares a
  mount namespace and makes every mount in it private (no propagation back), only in a
  forked child, never in the process that imported the kit; `mount_tmpfs` mounts a small
  tmpfs only in the process that made such a namespace, while it is in it, and only on a
  directory beneath the scratch directory (`make_directory`, one component). The mount
  dies with the child's namespace; the machine's mount table never changes.
- Other processes (kit.adapter.pidfd). `pidfd_open` and `child_wait` take only the pid of
  a child `spawn_child` forked in this process and not yet reaped (a reaped pid may
  name another process by then); such children are reaped when the example ends.
- Native loops (kit.adapter.native_race). `race_loop` runs the kit's own race executor
  (kit/native/race.c, built from the kit's source, never from the spec) with integer
  arguments and one of its fixed scenarios (check_race_loop): it creates its own eventfds,
  epoll instances and threads, opens no path and touches no descriptor of the behaviour.
  It is bounded (killed after its time cap plus its waits, and by its own alarm) and runs
  at most 64 waiter threads.
- ptrace, other namespaces, /proc writes other than those sysctls and the time namespace's
  offsets, module loading, reboot, kill(2) of another process: no operation does any of
  these.
- Kernel AIO, kcmp(2), epoll, eventfd, timerfd, signalfd, poll, select, pipes and socket
  pairs act on the behaviour's own descriptors only (kcmp compares within the kit's own
  process), so nothing here needs a rule of its own.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

SCRATCH = "scratch:"


class Refused(Exception):
    """A step reached outside what a spec may touch: a spec error, never a deviation."""


@dataclass(frozen=True)
class Interface:
    pattern: str        # a regular expression for the whole canonical path
    writable: bool      # may be opened for writing (never created)
    why: str


_PROC_TASK = r"/proc/(?:self|thread-self)(?:/task/\d+)?"
INTERFACES = (
    Interface(r"/", False, "a directory every system has (epoll_ctl(2) refuses it: EPERM)"),
    Interface(r"/dev/(?:null|zero|full)", True,
              "character devices without state: a write is discarded or fails"),
    Interface(r"/proc/sys/fs/epoll(?:/max_user_watches|/max_user_instances)?", False,
              "epoll(7)'s limits; changing them would change the machine"),
    Interface(r"/proc/sys/fs/(?:nr_open|file-max|file-nr|pipe-max-size)", False,
              "descriptor limits, for EMFILE and ENFILE experiments"),
    Interface(_PROC_TASK + r"/(?:fd|fdinfo|fdinfo/\d+)", False,
              "the kit's own descriptors (not fd/N: its magic link reopens any file)"),
    Interface(_PROC_TASK + r"/(?:stat|status|limits|syscall|comm|wchan)", False,
              "the kit's own process and threads, nothing secret in them (not environ, "
              "mem, root, cwd or exe)"),
    Interface(r"/proc/self/mounts", False,
              "the mounts of the process's namespace, pollable for a mount change "
              "(proc(5)); only mount_tmpfs changes it, in a private namespace"),
)
_INTERFACE_RES = [(re.compile(i.pattern), i) for i in INTERFACES]

# fcntl(2) commands on the descriptor or its own object, with an integer argument.
FCNTL_COMMANDS = {0: "F_DUPFD", 1: "F_GETFD", 2: "F_SETFD", 3: "F_GETFL", 4: "F_SETFL",
                  9: "F_GETOWN", 1030: "F_DUPFD_CLOEXEC", 1031: "F_SETPIPE_SZ",
                  1032: "F_GETPIPE_SZ"}

# ioctl(2) requests with no argument that touch only the descriptor itself, plus one that
# no file a spec can reach handles (type 0xEF, number 0xFF: ioctl-number.rst gives type
# 0xEF only numbers 00-0F, to exfat and ntfs3).
IOCTL_UNHANDLED = 0xEFFF
IOCTL_REQUESTS = {0x5451: "FIOCLEX", 0x5450: "FIONCLEX", IOCTL_UNHANDLED: "IOCTL_UNHANDLED"}

# The sysctls a behaviour may change (`machine_wide:`): only the limits that no experiment
# inside one process can reach, each restored afterwards (kit.engine.machine_wide).
SYSCTLS = {
    "fs.epoll.max_user_watches": "/proc/sys/fs/epoll/max_user_watches",
    "fs.file-max": "/proc/sys/fs/file-max",
}

# ioctl_eventpoll(2): the only requests with an argument, each on an epoll fd only.
EPOLL_IOCTLS = {0x40088A01: "EPIOCSPARAMS", 0x80088A02: "EPIOCGPARAMS"}
EPOLL_LINK = "anon_inode:[eventpoll]"

_TMPFILE = getattr(os, "O_TMPFILE", 0o20200000) & ~os.O_DIRECTORY
_WRITES = os.O_CREAT | os.O_TRUNC | os.O_APPEND | _TMPFILE
_CREATES = os.O_CREAT | _TMPFILE


def opens_for_writing(flags: int) -> bool:
    return (flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR) or bool(flags & _WRITES)


@dataclass(frozen=True)
class Place:
    """Where an allowed path leads: a name in the scratch directory, or an interface."""
    scratch: bool
    path: str           # the name beneath the scratch directory, or the canonical path


def scratch_name(path: str) -> str:
    """The NAME of `scratch:NAME`, if it stays beneath the directory ('' is the directory
    itself); Refused otherwise."""
    name = path[len(SCRATCH):]
    if name.startswith("/"):
        raise Refused(f"{path!r}: a scratch name is relative to the scratch directory")
    parts = name.split("/")
    if ".." in parts:
        raise Refused(f"{path!r}: `..` would leave the scratch directory")
    if "\0" in name:
        raise Refused(f"{path!r}: a path cannot hold a NUL byte")
    return name


def interface(path: str) -> Interface | None:
    for pattern, entry in _INTERFACE_RES:
        if pattern.fullmatch(path):
            return entry
    return None


def check_path(path, flags: int) -> Place:
    """The place `open_path` may open with `flags`, or Refused with the reason."""
    if not isinstance(path, str) or not path:
        raise Refused(f"path {path!r} is not a path")
    if path.startswith(SCRATCH):
        return Place(True, scratch_name(path))
    if not path.startswith("/"):
        raise Refused(f"{path!r}: a relative path; name a file in the behaviour's scratch "
                      f"directory as {SCRATCH}NAME, or a kernel interface by absolute path")
    if os.path.normpath(path) != path or path.startswith("//") or "\0" in path:
        raise Refused(f"{path!r}: write the path in canonical form (no `.`, `..` or `//`)")
    entry = interface(path)
    if entry is None:
        raise Refused(f"{path!r} is outside the behaviour's scratch directory and not one of "
                      f"the kernel interfaces a spec may open (docs/spec-language.md)")
    if flags & _CREATES:
        raise Refused(f"{path!r} is a kernel interface: it is opened, never created "
                      f"(no O_CREAT or O_TMPFILE)")
    if not entry.writable and opens_for_writing(flags):
        raise Refused(f"{path!r} is read only for specs ({entry.why}): no O_WRONLY, O_RDWR, "
                      f"O_TRUNC or O_APPEND")
    return Place(False, path)


def check_fcntl(cmd) -> None:
    if cmd not in FCNTL_COMMANDS:
        raise Refused(f"fcntl command {cmd!r} is not one a spec may use (only "
                      f"{', '.join(sorted(FCNTL_COMMANDS.values()))}): others signal other "
                      f"processes or read a pointer from an integer")


def check_ioctl(request) -> None:
    if request not in IOCTL_REQUESTS:
        raise Refused(f"ioctl request {request!r} is not one a spec may use (only "
                      f"{', '.join(sorted(IOCTL_REQUESTS.values()))}): others reach a "
                      f"driver or filesystem with a pointer the spec cannot give")


def check_epoll_ioctl(fd: int, request: int) -> None:
    """An ioctl_eventpoll(2) request, on an epoll fd (or on a number that is not open, for
    EBADF); Refused otherwise."""
    if request not in EPOLL_IOCTLS:
        raise Refused(f"ioctl request {request!r} is not an epoll request (only "
                      f"{', '.join(sorted(EPOLL_IOCTLS.values()))})")
    try:
        link = os.readlink(f"/proc/self/fd/{fd}") if 0 <= fd < 2**31 else None
    except OSError:
        link = None     # not open: the kernel answers EBADF
    if link is not None and link != EPOLL_LINK:
        raise Refused(f"{EPOLL_IOCTLS[request]} on fd {fd} ({link}): only on an epoll fd, "
                      f"where no other driver can read the argument")


def check_sysctl(name, armed) -> str:
    """The /proc/sys path of a sysctl the running behaviour may set now; Refused
    otherwise."""
    if name not in SYSCTLS:
        raise Refused(f"sysctl {name!r} is not one a spec may change (only "
                      f"{', '.join(sorted(SYSCTLS))})")
    if name not in armed:
        raise Refused(f"sysctl {name} is not held for this behaviour: declare it in "
                      f"`machine_wide:` (the engine then journals and restores it)")
    return SYSCTLS[name]


def check_mount_point(path) -> str:
    """The NAME of a `scratch:NAME` directory a mount may cover (one component directly in
    the scratch directory), or Refused."""
    if not isinstance(path, str) or not path.startswith(SCRATCH):
        raise Refused(f"{path!r}: a mount point must be a directory in the behaviour's "
                      f"scratch directory ({SCRATCH}NAME), never a path of the machine")
    name = scratch_name(path)
    if not name or "/" in name or name == ".":
        raise Refused(f"{path!r}: name one directory directly in the scratch directory")
    return name


def check_race_loop(args: dict) -> tuple[str, str] | None:
    """The race executor runs only its own scenarios, with 1 to MAX_WAITERS threads:
    (argument, reason) for what is refused, or None."""
    from kit.native.race import MAX_WAITERS, SCENARIOS

    if "scenario" in args and args["scenario"] not in SCENARIOS:
        return "scenario", (f"unknown scenario {args['scenario']!r}: the race executor runs "
                            f"only {', '.join(SCENARIOS)}")
    waiters = args.get("waiters")
    if isinstance(waiters, int) and not 1 <= waiters <= MAX_WAITERS:
        return "waiters", f"waiters={waiters}: the race executor runs 1 to {MAX_WAITERS} waiters"
    return None


def refusal(action: str, args: dict) -> tuple[str, str] | None:
    """(argument, reason) if a step with these argument values is refused; arguments not
    given (not known yet, at load time) are not checked."""
    if action == "race_loop":
        return check_race_loop(args)
    try:
        if action == "open_path" and "path" in args:
            check_path(args["path"], args.get("flags", os.O_RDONLY))
        if action == "fcntl" and "cmd" in args:
            check_fcntl(args["cmd"])
        if action == "ioctl" and "request" in args:
            check_ioctl(args["request"])
        if action in ("sysctl_set", "sysctl_get") and "sysctl" in args \
                and args["sysctl"] not in SYSCTLS:
            check_sysctl(args["sysctl"], ())
        if action in ("mount_tmpfs", "make_directory") and "path" in args:
            check_mount_point(args["path"])
    except Refused as exc:
        if action == "open_path" and "flags" in args and _is_flags_refusal(args):
            return "flags", str(exc)

        return {"open_path": "path", "ioctl": "request", "sysctl_set": "sysctl",
                "sysctl_get": "sysctl", "mount_tmpfs": "path",
                "make_directory": "path"}.get(action, "cmd"), str(exc)
    return None


def _is_flags_refusal(args: dict) -> bool:
    """Whether the path alone is allowed, so the flags are what was refused."""
    try:
        check_path(args["path"], os.O_RDONLY)
    except Refused:
        return False
    return True


def foreign_descriptors(kinds: dict[str, str], args: dict, owned: set[int]) -> list[str]:
    """The `fd` arguments naming an open descriptor the behaviour did not create."""
    out = []
    for name, kind in kinds.items():
        value = args.get(name)
        if kind == "fd" and isinstance(value, int) and value not in owned and _is_open(value):
            out.append(f"{name}={value}")
    return out


def _is_open(fd: int) -> bool:
    if not 0 <= fd < 2**31:
        return False
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
