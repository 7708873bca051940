"""The per-architecture tables (kit.adapter.arch): numbers against the kernel's headers and
tables, struct layouts, byte order, and what a missing system call means for a spec."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import pytest

from kit.adapter import arch
from kit.engine.target import Target, not_applicable_reason
from kit.spec.loader import load_file

REPO = Path(__file__).resolve().parent.parent
GENERIC_UNISTD = Path("/usr/include/asm-generic/unistd.h")   # Debian's linux-libc-dev

# arch/s390/kernel/syscalls/syscall.tbl, the rows the kit uses ("common" or "64"), as the
# kernel lists them; 403 and up are the numbers every architecture shares
S390X_TBL = """
3 common read
4 common write
6 common close
41 common dup
55 common fcntl
168 common poll
172 common prctl
238 common futex
243 common io_setup
244 common io_destroy
245 common io_getevents
246 common io_submit
249 common epoll_create
250 common epoll_ctl
251 common epoll_wait
254 common timer_create
255 common timer_settime
258 common timer_delete
301 common pselect6
302 common ppoll
312 common epoll_pwait
316 common signalfd
318 common eventfd
319 common timerfd_create
320 common timerfd_settime
321 common timerfd_gettime
322 common signalfd4
323 common eventfd2
327 common epoll_create1
330 common rt_tgsigqueueinfo
334 common prlimit64
343 common kcmp
434 common pidfd_open
437 common openat2
441 common epoll_pwait2
"""


def _generic_numbers() -> dict[str, int]:
    text = GENERIC_UNISTD.read_text()
    numbers = {m[1]: int(m[2]) for m in re.finditer(r"#define __NR(?:3264)?_(\w+) (\d+)\b",
                                                      text)}
    # __NR_fcntl is __NR3264_fcntl: the 64-bit ABI's name for it
    return numbers


@pytest.mark.skipif(not GENERIC_UNISTD.exists(),
                    reason=f"{GENERIC_UNISTD} is missing (Debian package linux-libc-dev)")
def test_the_aarch64_table_is_the_generic_unistd_h():
    generic = _generic_numbers()
    for name, number in arch.SYSCALLS["aarch64"].items():
        assert generic.get(name) == number, name


@pytest.mark.skipif(not GENERIC_UNISTD.exists(),
                    reason=f"{GENERIC_UNISTD} is missing (Debian package linux-libc-dev)")
def test_the_generic_table_has_none_of_the_legacy_calls():
    generic = _generic_numbers()
    for name in ("epoll_create", "epoll_wait", "eventfd", "signalfd", "poll", "select"):
        assert name not in generic
        assert not arch.SYSCALLS["aarch64"].get(name)


def test_the_s390x_table_is_the_kernels_syscall_tbl():
    rows = {name: int(number) for number, _, name in
            (line.split() for line in S390X_TBL.strip().splitlines())}
    assert arch.SYSCALLS["s390x"] == rows


def test_every_architecture_has_the_calls_the_kit_needs():
    needed = {"read", "write", "close", "eventfd2", "epoll_create1", "epoll_ctl",
              "epoll_pwait", "signalfd4", "timerfd_create", "timerfd_settime",
              "timerfd_gettime", "futex", "ppoll", "pselect6"}
    for abi, table in arch.SYSCALLS.items():
        assert needed <= set(table), abi


@pytest.mark.parametrize("abi, size, data_at", [
    ("x86_64", 12, 4), ("aarch64", 16, 8), ("s390x", 16, 8)])
def test_struct_epoll_event_is_packed_only_on_x86_64(abi, size, data_at):
    event = arch.epoll_event_for(abi)
    assert ctypes.sizeof(event) == size
    assert event.data.offset == data_at


def test_a_spec_needing_a_call_aarch64_lacks_is_not_applicable_with_that_reason(
        monkeypatch, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "family: eventfd\nbehaviours:\n"
        "  - id: t.legacy\n    title: legacy eventfd\n"
        "    cite: {page: eventfd(2), section: NOTES, quote: \"The legacy system call\"}\n"
        "    applies: {syscalls: [eventfd]}\n"
        "    steps:\n      - eventfd_syscall: {initval: 0}\n        expect: {ok: true}\n")
    loaded = load_file(spec)
    assert not loaded.errors, loaded.errors
    behaviour = loaded.behaviours[0]
    target = Target(release="6.18.0", version_string="#1", arch="aarch64", capabilities=0,
                    libc="glibc 2.36")
    monkeypatch.setattr(arch, "ARCH", "aarch64")
    assert not_applicable_reason(behaviour, target) == "aarch64 has no eventfd system call"
    monkeypatch.setattr(arch, "ARCH", "s390x")
    target.arch = "s390x"
    assert not_applicable_reason(behaviour, target) is None


def test_a_raw_call_the_architecture_lacks_is_enosys_not_a_crash(monkeypatch):
    """The adapter's *_syscall operations answer ENOSYS where the table has no number, so a
    spec run there by hand (without `applies: syscalls`) deviates, it does not crash."""
    from kit.adapter import eventfd

    monkeypatch.setitem(arch.SYSCALLS, arch.ARCH, {
        k: v for k, v in arch.SYSCALLS[arch.ARCH].items() if k != "eventfd"})
    assert eventfd.eventfd_syscall(0).errno == "ENOSYS"


# -- byte order ---------------------------------------------------------------------------

_FIXED_ORDER = re.compile(r"""(struct\.(?:Struct|pack|unpack|pack_into|unpack_from)\(\s*["'][<>!]"""
                          r"""|byteorder\s*=\s*["'](?:little|big)["']"""
                          r"""|from_bytes\([^)]*["'](?:little|big)["']"""
                          r"""|to_bytes\([^)]*["'](?:little|big)["']"""
                          r"""|LittleEndianStructure|BigEndianStructure)""")


def test_the_adapter_reads_every_struct_in_the_targets_own_byte_order():
    """s390x is big-endian: a counter or record read with a fixed little-endian format would
    be byte-swapped there. Every format in the adapter is native ("=" or ctypes)."""
    offenders = []
    for path in sorted((REPO / "kit" / "adapter").glob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if _FIXED_ORDER.search(line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_the_check_catches_a_fixed_little_endian_format():
    assert _FIXED_ORDER.search('_U64 = struct.Struct("<Q")')
    assert _FIXED_ORDER.search("int.from_bytes(raw, 'little')")
    assert not _FIXED_ORDER.search('_U64 = struct.Struct("=Q")')


@pytest.mark.parametrize("order", ["little", "big"])
def test_the_counter_and_siginfo_formats_follow_the_byte_order(order):
    """What an eventfd read and a signalfd_siginfo look like in each byte order, decoded
    with the formats the adapter uses, on a machine of that order (struct's '=' is native:
    here the bytes are made in the host's order, which is the only one '=' can see)."""
    import struct
    import sys

    from kit.adapter import fds, signalfd

    if sys.byteorder != order:
        pytest.skip(f"this machine is {sys.byteorder}-endian; the {order}-endian case runs "
                    f"in the s390x userland test")
    raw = (5).to_bytes(8, order)
    assert fds._U64.unpack(raw) == (5,)
    record = (17).to_bytes(4, order) + bytes(124)
    assert signalfd._SIGINFO.unpack(record)[0] == 17
    assert struct.calcsize("=Q") == 8


# -- the kit's own signals ------------------------------------------------------------------

def test_the_kits_signals_sit_below_the_highest_one_this_process_can_send():
    import signal

    from kit.adapter import process, watchdog

    assert watchdog.top_signal() == signal.SIGRTMAX            # natively, every one
    assert watchdog.WATCHDOG_SIGNAL == signal.SIGRTMAX - 1
    assert watchdog.WATCHDOG_SIGNAL_NAME == "SIGRTMAX-1"
    assert process.DUMP_SIGNAL == signal.SIGRTMAX - 2
    # under qemu-user 7.2 the top two have no host signal: pthread_kill gives EINVAL
    assert watchdog.top_signal(lambda s: s <= signal.SIGRTMAX - 2) == signal.SIGRTMAX - 2


def test_a_signal_that_cannot_be_sent_is_found_so(monkeypatch):
    import signal

    from kit.adapter import watchdog

    def refuse(ident, signum):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(signal, "pthread_kill", refuse)
    assert not watchdog._deliverable(signal.SIGRTMAX)
    assert signal.SIGRTMAX not in signal.pthread_sigmask(signal.SIG_BLOCK, [])   # mask restored


def test_a_kernel_timespec_of_seconds_never_holds_a_whole_second_in_nanoseconds():
    from kit.adapter.arch import KernelTimespec

    for seconds, want in ((0.9999999999, (1, 0)), (1.5, (1, 500_000_000)),
                          (2.000000001, (2, 1)), (0, (0, 0))):
        ts = KernelTimespec.of(seconds)
        assert (ts.tv_sec, ts.tv_nsec) == want, seconds
