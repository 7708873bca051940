"""The ctypes adapter, on the real kernel: errors are values with errno names, byte counts are
exact, /proc is parsed in the kernel's bases, struct layouts match C, and an LD_PRELOAD
interposer is what the kit calls."""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import sys
import textwrap

import pytest
from helpers import REPO

from kit.adapter import arch, epoll, eventfd, fds, libc, poll, proc, sockets
from kit.adapter.libc import Result
from kit.registry import CONSTANTS, OPERATIONS

C = CONSTANTS


@pytest.fixture
def closer():
    """Closes every descriptor a test registers, whatever happens."""
    opened: list[int] = []
    yield opened.extend
    for fd in opened:
        try:
            os.close(fd)
        except OSError:
            pass


def _new_eventfd(closer, initval=0, flags=C["EFD_NONBLOCK"]) -> int:
    res = eventfd.eventfd(initval, flags)
    assert res.ok, res
    closer([res.ret])
    assert res.created_fds == [res.ret] and res.value == res.ret
    return res.ret


# -- errors come back as values -----------------------------------------------------------


def test_read_on_a_closed_fd_is_ebadf_as_a_value(closer):
    fd = _new_eventfd(closer)
    os.close(fd)
    res = fds.read_u64(fd)
    assert isinstance(res, Result)
    assert (res.ok, res.ret, res.errno, res.value) == (False, -1, "EBADF", None)
    assert fds.write_u64(fd, 1).errno == "EBADF"
    assert fds.close(fd).errno == "EBADF"


def test_eventfd_with_invalid_flags_is_einval_on_every_path():
    for call in (eventfd.eventfd, eventfd.eventfd2_syscall):
        res = call(0, 0x10)
        assert (res.ret, res.errno, res.created_fds) == (-1, "EINVAL", []), call


def test_read_of_an_empty_nonblocking_eventfd_is_eagain(closer):
    res = fds.read_u64(_new_eventfd(closer))
    assert res.errno == "EAGAIN" and res.as_dict()["errno"] == "EAGAIN"


def test_errno_is_reset_before_each_call(closer):
    fd = _new_eventfd(closer, 3)
    ctypes.set_errno(22)
    res = fds.read_u64(fd)
    assert res.ok and res.errno is None and res.value == 3


def test_errno_name_knows_every_errno_and_invents_none():
    assert libc.errno_name(9) == "EBADF"
    assert libc.errno_name(11) == "EAGAIN"
    assert libc.errno_name(100000) == "E100000"


def test_result_as_dict_is_json_ready():
    res = Result(ret=8, value=5, duration=0.1234567)
    assert res.as_dict() == {"ret": 8, "errno": None, "value": 5, "duration": 0.123457}


# -- exact byte counts ---------------------------------------------------------------------


def test_u64_buffer_is_exactly_size_bytes_in_host_order():
    for size in (0, 1, 7, 8, 9, 16):
        buf = fds.u64_buffer(0x0102030405060708, size)
        expected = (struct.pack("=Q", 0x0102030405060708) + bytes(8))[:size]
        assert buf.raw[:size] == expected
    assert fds.u64_buffer(-1, 8).raw[:8] == b"\xff" * 8      # masked to 64 bits


def test_write_u64_and_read_u64_move_exactly_eight_bytes(closer):
    fd = _new_eventfd(closer)
    assert fds.write_u64(fd, 0xFFFFFFFFFFFFFFFE).ret == 8
    res = fds.read_u64(fd)
    assert (res.ret, res.value) == (8, 0xFFFFFFFFFFFFFFFE)
    res = fds.read_u64(fd, size=16)       # a larger buffer still reads 8 bytes
    assert res.errno == "EAGAIN"
    fds.write_u64(fd, 3)
    res = fds.read_u64(fd, size=16)
    assert (res.ret, res.value) == (8, 3)


def test_short_buffers_are_refused_by_the_eventfd(closer):
    fd = _new_eventfd(closer, 1)
    assert fds.read_u64(fd, size=7).errno == "EINVAL"
    assert fds.write_u64(fd, 1, size=4).errno == "EINVAL"


def test_sizes_are_exact_on_a_pipe(closer):
    p = fds.pipe2(C["O_NONBLOCK"])
    assert p.ok
    closer(p.created_fds)
    assert sorted(p.created_fds) == sorted(p.value.values())
    assert fds.write_u64(p.value["write"], 0x0102030405060708, size=3).ret == 3
    res = fds.read(p.value["read"], 100)
    assert res.ret == 3
    assert res.value == struct.pack("=Q", 0x0102030405060708)[:3].hex()
    assert fds.write(p.value["write"], "héllo").ret == len("héllo".encode())
    res = fds.read_u64(p.value["read"], size=64)     # fewer than 8 bytes: hex, not a number
    assert res.ret == 6 and res.value == "héllo".encode().hex()
    assert fds.read(p.value["read"], 1).errno == "EAGAIN"


def test_glibc_eventfd_read_and_write(closer):
    fd = _new_eventfd(closer)
    assert eventfd.glibc_eventfd_write(fd, 41).ret == 0
    assert eventfd.glibc_eventfd_write(fd, 1).ret == 0
    res = eventfd.glibc_eventfd_read(fd)
    assert (res.ret, res.value) == (0, 42)
    assert eventfd.glibc_eventfd_read(fd).errno == "EAGAIN"


def test_raw_syscalls_make_eventfds(closer):
    res = eventfd.eventfd2_syscall(7, C["EFD_NONBLOCK"] | C["EFD_SEMAPHORE"])
    assert res.ok
    closer(res.created_fds)
    assert fds.read_u64(res.ret).value == 1
    legacy = eventfd.eventfd_syscall(2)
    if arch.has_syscall("eventfd"):
        assert legacy.ok
        closer(legacy.created_fds)
        assert fds.read_u64(legacy.ret).value == 2
    else:
        assert legacy.errno == "ENOSYS"


def test_dup_and_fcntl(closer):
    fd = _new_eventfd(closer)
    res = fds.dup(fd)
    closer(res.created_fds)
    assert res.ok and res.created_fds == [res.ret] and res.ret != fd
    flags = fds.fcntl(fd, C["F_GETFL"])
    assert flags.ok and flags.ret & C["O_NONBLOCK"]
    assert fds.fcntl(res.ret, C["F_GETFD"]).ret & C["FD_CLOEXEC"] == 0


def test_socketpair_value_names_both_ends(closer):
    res = fds.socketpair()
    closer(res.created_fds)
    assert res.ok and set(res.value) == {"a", "b"}
    assert fds.write(res.value["a"], "x").ret == 1
    assert fds.read(res.value["b"], 10).value == "78"


def test_a_descriptor_passed_over_a_unix_socket_is_the_same_file(closer):
    pair = fds.socketpair()
    closer(pair.created_fds)
    efd = _new_eventfd(closer, initval=5)
    assert sockets.send_fd(pair.value["a"], efd).ret == 1
    got = sockets.recv_fd(pair.value["b"])
    closer(got.created_fds)
    assert got.ok and got.created_fds == [got.ret] and got.ret != efd
    assert fds.read_u64(got.ret).value == 5          # the same counter
    assert fds.read_u64(efd).errno == "EAGAIN"
    # a byte without a descriptor, and a bad descriptor, fail as values
    assert fds.write(pair.value["a"], "x").ret == 1
    assert sockets.recv_fd(pair.value["b"]).errno == "EBADMSG"
    assert sockets.send_fd(pair.value["a"], 987654).errno == "EBADF"


# -- readiness -------------------------------------------------------------------------------


def test_poll_ppoll_and_select_report_readiness(closer):
    fd = _new_eventfd(closer)
    assert poll.poll(fd, C["POLLIN"] | C["POLLOUT"]).value == C["POLLOUT"]
    fds.write_u64(fd, 1)
    assert poll.poll(fd).value == C["POLLIN"] | C["POLLOUT"]
    assert poll.ppoll(fd, C["POLLIN"], 0.0).value == C["POLLIN"]
    assert poll.select(fd).value == {"readable": True, "writable": True,
                                     "exceptional": False}
    assert poll.select(5000).errno == "EBADF"    # fd_set cannot express it


def test_poll_on_a_closed_fd_is_pollnval(closer):
    fd = _new_eventfd(closer)
    os.close(fd)
    assert poll.poll(fd).value == C["POLLNVAL"]


def test_epoll_reports_the_user_data(closer):
    efd = _new_eventfd(closer, 1)
    ep = epoll.epoll_create1(C["EPOLL_CLOEXEC"])
    assert ep.ok
    closer(ep.created_fds)
    data = 0xFEEDFACECAFEBEEF
    assert epoll.epoll_ctl(ep.ret, C["EPOLL_CTL_ADD"], efd, C["EPOLLIN"], data).ok
    res = epoll.epoll_wait(ep.ret, 4, 0)
    assert (res.ret, res.value) == (1, {data: C["EPOLLIN"]})
    assert epoll.epoll_ctl(ep.ret, C["EPOLL_CTL_ADD"], efd).errno == "EEXIST"
    assert epoll.epoll_ctl(ep.ret, C["EPOLL_CTL_ADD"], ep.ret).errno == "EINVAL"
    assert epoll.epoll_ctl(ep.ret, C["EPOLL_CTL_DEL"], efd).ok
    assert epoll.epoll_wait(ep.ret, 4, 0).value == {}


def test_epoll_event_size_matches_the_architecture():
    size = ctypes.sizeof(arch.EpollEvent)
    assert size == (12 if arch.ARCH == "x86_64" else 16)
    assert arch.EpollEvent.data.offset == (4 if arch.ARCH == "x86_64" else 8)


def test_epoll_event_layout_matches_c(cc, tmp_path):
    src = tmp_path / "size.c"
    src.write_text(textwrap.dedent("""\
        #include <stddef.h>
        #include <stdio.h>
        #include <sys/epoll.h>
        int main(void) {
            printf("%zu %zu\\n", sizeof(struct epoll_event), offsetof(struct epoll_event, data));
            return 0;
        }
    """))
    exe = tmp_path / "size"
    subprocess.run([cc, str(src), "-o", str(exe)], check=True, capture_output=True)
    size, offset = map(int, subprocess.run([str(exe)], check=True, capture_output=True,
                                           text=True).stdout.split())
    assert (ctypes.sizeof(arch.EpollEvent), arch.EpollEvent.data.offset) == (size, offset)


def test_syscall_tables_know_this_architecture():
    assert arch.ARCH in arch.SYSCALLS, f"no syscall table for {arch.ARCH}"
    if arch.ARCH == "x86_64":
        assert arch.syscall_number("eventfd2") == 290
        assert arch.has_syscall("eventfd") and arch.has_syscall("epoll_create")
    assert arch.syscall_number("no_such_call") is None


# -- /proc -----------------------------------------------------------------------------------


def test_parse_fdinfo_uses_the_kernels_bases():
    text = ("pos:\t0\nflags:\t02004002\nmnt_id:\t15\nino:\t1057\neventfd-count:  1a\n"
            "eventfd-id: 3\nweird line without colon\n"
            "tfd:        5 events:       19 data:                5  pos:0 ino:41d sdev:f\n"
            "tfd:        6 events:       19 data:                6  pos:0 ino:41d sdev:f\n")
    fields = proc.parse_fdinfo(text)
    assert fields["flags"] == 0o2004002                  # octal
    assert fields["eventfd-count"] == 0x1A               # hex
    assert fields["pos"] == 0 and fields["mnt_id"] == 15 and fields["eventfd-id"] == 3
    assert isinstance(fields["tfd"], list) and len(fields["tfd"]) == 2   # repeated keys
    assert fields["tfd"][0].startswith("5 events:")


def test_fdinfo_of_a_real_eventfd(closer):
    fd = _new_eventfd(closer, 0x1A, C["EFD_NONBLOCK"] | C["EFD_CLOEXEC"])
    res = proc.fdinfo(fd)
    assert res.ok
    info = res.value
    assert info["eventfd-count"] == 0x1A
    assert info["flags"] & C["O_NONBLOCK"] and info["flags"] & C["O_CLOEXEC"]
    assert info["flags"] & 0o3 == C["O_RDWR"]
    assert info["pos"] == 0


def test_fd_link_and_fd_is_open(closer):
    fd = _new_eventfd(closer)
    assert proc.fd_link(fd).value == "anon_inode:[eventfd]"
    assert proc.fd_is_open(fd).value is True
    assert fd in proc.open_fds()
    os.close(fd)
    assert proc.fd_is_open(fd).value is False
    assert proc.fd_link(fd).errno == "ENOENT"
    assert proc.fdinfo(fd).errno == "ENOENT"


def test_open_fds_reports_only_descriptors_that_are_open(closer):
    fd = _new_eventfd(closer)
    assert fd in proc.open_fds()
    os.close(fd)          # now the lowest free number: the listing itself would take it
    assert fd not in proc.open_fds()


def test_exec_probe_sees_what_close_on_exec_leaves(closer):
    inherited = _new_eventfd(closer, 3, 0)
    private = _new_eventfd(closer, 3, C["EFD_CLOEXEC"])
    seen = OPERATIONS["exec_probe"].fn(inherited).value
    assert seen["open"] is True and seen["link"] == "anon_inode:[eventfd]"
    assert seen["fdinfo"]["eventfd-count"] == 3
    assert OPERATIONS["exec_probe"].fn(private).value == {"open": False, "link": None,
                                                           "fdinfo": {}}


def test_every_operation_is_registered_with_declared_kinds():
    for name in ("eventfd", "eventfd2_syscall", "read_u64", "write_u64", "close", "dup",
                 "fcntl", "pipe2", "poll", "ppoll", "select", "epoll_create1", "epoll_ctl",
                 "epoll_wait", "fd_link", "fdinfo", "fd_is_open", "exec_probe"):
        assert name in OPERATIONS, name
    assert OPERATIONS["read_u64"].blocking and not OPERATIONS["close"].blocking
    assert OPERATIONS["read_u64"].required == ("fd",)
    assert OPERATIONS["read_u64"].defaults == {"size": 8}


# -- LD_PRELOAD: the interposer is what the kit calls ----------------------------------------

SHIM = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

static int calls;

/* A fault injector: the C library's eventfd always fails with EMFILE. */
int eventfd(unsigned int initval, int flags) {
    (void)initval; (void)flags;
    calls++;
    errno = EMFILE;
    return -1;
}

/* A counting pass-through for read(2). */
static int reads;
ssize_t read(int fd, void *buf, size_t count) {
    reads++;
    return syscall(SYS_read, fd, buf, count);
}

int shim_eventfd_calls(void) { return calls; }
int shim_read_calls(void) { return reads; }
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> str:
    import shutil

    compiler = shutil.which("gcc") or shutil.which("cc")
    if not compiler:
        pytest.skip("no C compiler (gcc/cc) on PATH: cannot build an LD_PRELOAD shim")
    tmp = tmp_path_factory.mktemp("shim")
    (tmp / "shim.c").write_text(SHIM)
    out = tmp / "shim.so"
    built = subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(out),
                            str(tmp / "shim.c")], capture_output=True, text=True, check=False)
    if built.returncode != 0:
        pytest.skip(f"cannot build the LD_PRELOAD shim: {built.stderr[-500:]}")
    return str(out)


def _with_preload(shim: str, code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["LD_PRELOAD"] = shim
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=60, check=False)


def test_a_preloaded_eventfd_is_what_the_kit_calls(shim):
    ran = _with_preload(shim, """
        import json
        from kit.adapter import eventfd, fds, libc
        wrapped = eventfd.eventfd(0, 0)
        raw = eventfd.eventfd2_syscall(5, 0)        # *_syscall bypasses the wrapper
        before = libc.libc.shim_read_calls()
        value = fds.read_u64(raw.ret).value
        print(json.dumps({"wrapped": wrapped.as_dict(), "raw_ok": raw.ok, "value": value,
                          "eventfd_calls": libc.libc.shim_eventfd_calls(),
                          "reads": libc.libc.shim_read_calls() - before}))
    """)
    assert ran.returncode == 0, ran.stderr
    import json

    got = json.loads(ran.stdout.strip().splitlines()[-1])
    assert got["wrapped"]["errno"] == "EMFILE" and got["wrapped"]["ret"] == -1
    assert got["eventfd_calls"] == 1
    assert got["raw_ok"] is True and got["value"] == 5
    assert got["reads"] == 1


def test_a_preloaded_fault_becomes_a_deviation_of_the_spec(shim, tmp_path):
    """The interposer gets its own compliance verdict: the spec's eventfd step fails."""
    spec = tmp_path / "specs" / "x" / "t.yaml"
    spec.parent.mkdir(parents=True)
    spec.write_text(textwrap.dedent("""\
        behaviours:
          - id: x.preload.eventfd
            title: eventfd makes a counter
            cite: {page: eventfd(2), section: DESCRIPTION, quote: "creates an eventfd object"}
            steps:
              - eventfd: {initval: 1, flags: EFD_NONBLOCK}
                as: efd
              - read_u64: {fd: $efd}
                expect: {value: 1}
    """))
    ran = _with_preload(shim, f"""
        from kit.adapter import watchdog
        from kit.engine.interpreter import Run
        from kit.engine.target import Target
        from kit.spec.loader import load_file
        watchdog.install()
        (b,) = load_file({str(spec)!r}).behaviours
        outcome = Run(b, Target.current(), {{}}).outcome()
        print(outcome.status)
        print(outcome.message)
    """)
    assert ran.returncode == 0, ran.stderr
    status, message = ran.stdout.strip().splitlines()[-2:]
    assert status == "deviates"
    assert "this set-up step failed with EMFILE" in message
