"""Plain descriptor operations with exact byte counts: read, write, close, dup, fcntl,
pread, pwrite, lseek, splice, fallocate, ioctl,
and companions (pipe2, socketpair) for specs that need a second kind of descriptor."""

from __future__ import annotations

import ctypes
import os
import socket
import struct

from kit.adapter.libc import Result, call, libc
from kit.confinement import IOCTL_UNHANDLED, check_fcntl, check_ioctl
from kit.registry import constants, operation

constants(
    O_NONBLOCK=os.O_NONBLOCK, O_CLOEXEC=os.O_CLOEXEC, O_RDWR=os.O_RDWR,
    O_RDONLY=os.O_RDONLY, O_WRONLY=os.O_WRONLY, O_DIRECT=getattr(os, "O_DIRECT", 0o40000),
    FD_CLOEXEC=1, F_GETFD=1, F_SETFD=2, F_GETFL=3, F_SETFL=4,
    AF_UNIX=socket.AF_UNIX, AF_INET=socket.AF_INET, SOCK_STREAM=socket.SOCK_STREAM,
    SOCK_DGRAM=socket.SOCK_DGRAM, SOCK_NONBLOCK=socket.SOCK_NONBLOCK,
    SOCK_CLOEXEC=socket.SOCK_CLOEXEC,
    U64_MAX=0xFFFFFFFFFFFFFFFF,
)

F_DUPFD, F_DUPFD_CLOEXEC = 0, 1030
constants(F_DUPFD=F_DUPFD, F_DUPFD_CLOEXEC=F_DUPFD_CLOEXEC)

libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.read.restype = ctypes.c_ssize_t
libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.write.restype = ctypes.c_ssize_t
libc.close.argtypes = [ctypes.c_int]
libc.dup.argtypes = [ctypes.c_int]
libc.pipe2.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int]
libc.socketpair.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]


_U64 = struct.Struct("=Q")


def u64_buffer(value: int, size: int) -> ctypes.Array:
    """A buffer of exactly `size` bytes whose first bytes hold `value` in host order."""
    data = _U64.pack(value & 0xFFFFFFFFFFFFFFFF)
    if size != 8:  # the common case needs neither padding nor truncation
        data = data[:size] if size < 8 else data + bytes(size - 8)
    return ctypes.create_string_buffer(data, max(size, 1))


@operation(family="fd", blocking=True, fd="fd", size="int")
def read(fd: int, size: int = 8) -> Result:
    """read(2) of exactly `size` bytes; value is the bytes read, as hex."""
    buf = ctypes.create_string_buffer(max(size, 1))
    res = call(libc.read, fd, buf, size)
    if res.ok:
        res.value = buf.raw[: res.ret].hex()
    return res


@operation(family="fd", blocking=True, fd="fd", size="int")
def read_u64(fd: int, size: int = 8) -> Result:
    """read(2) with a `size`-byte buffer; value is the host-order uint64 in its first 8 bytes."""
    buf = ctypes.create_string_buffer(max(size, 8))
    res = call(libc.read, fd, buf, size)
    if res.ok:
        res.value = _U64.unpack_from(buf)[0] if res.ret >= 8 else buf.raw[: res.ret].hex()
    return res


@operation(family="fd", blocking=True, fd="fd", value="int", size="int")
def write_u64(fd: int, value: int, size: int = 8) -> Result:
    """write(2) of `size` bytes whose first 8 hold `value` in host order (shorter sizes truncate)."""
    return call(libc.write, fd, u64_buffer(value, size), size)


@operation(family="fd", blocking=True, fd="fd", data="str")
def write(fd: int, data: str) -> Result:
    """write(2) of the UTF-8 bytes of `data`."""
    raw = data.encode()
    return call(libc.write, fd, ctypes.create_string_buffer(raw, max(len(raw), 1)), len(raw))


@operation(family="fd", fd="fd")
def close(fd: int) -> Result:
    """close(2)."""
    return call(libc.close, fd)


@operation(family="fd", fd="fd")
def dup(fd: int) -> Result:
    """dup(2); value is the new descriptor."""
    res = call(libc.dup, fd)
    if res.ok:
        res.created_fds.append(res.ret)
    return res


@operation(family="fd", fd="fd", cmd="flags", arg="int")
def fcntl(fd: int, cmd: int, arg: int = 0) -> Result:
    """fcntl(2) with an integer argument (F_GETFD, F_GETFL, F_SETFL, F_DUPFD, ...); value is
    the return. Commands that signal other processes or read a pointer are refused."""
    check_fcntl(cmd)
    res = call(libc.fcntl, ctypes.c_int(fd), ctypes.c_int(cmd), ctypes.c_long(arg))
    if res.ok and cmd in (F_DUPFD, F_DUPFD_CLOEXEC):
        res.created_fds.append(res.ret)
    return res


@operation(family="fd", flags="flags")
def pipe2(flags: int = 0) -> Result:
    """pipe2(2); value is {read, write}."""
    fds = (ctypes.c_int * 2)()
    res = call(libc.pipe2, fds, flags)
    if res.ok:
        res.value = {"read": fds[0], "write": fds[1]}
        res.created_fds.extend(fds)
    return res


@operation(family="fd", domain="flags", type="flags")
def socketpair(domain: int = socket.AF_UNIX, type: int = socket.SOCK_STREAM) -> Result:  # noqa: A002
    """socketpair(2); value is {a, b}."""
    fds = (ctypes.c_int * 2)()
    res = call(libc.socketpair, domain, type, 0, fds)
    if res.ok:
        res.value = {"a": fds[0], "b": fds[1]}
        res.created_fds.extend(fds)
    return res


libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
libc.pread.restype = ctypes.c_ssize_t
libc.pwrite.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]
libc.pwrite.restype = ctypes.c_ssize_t
libc.lseek.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_int]
libc.lseek.restype = ctypes.c_long
libc.splice.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                        ctypes.c_size_t, ctypes.c_uint]
libc.splice.restype = ctypes.c_ssize_t
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]

constants(SEEK_SET=os.SEEK_SET, SEEK_CUR=os.SEEK_CUR, SEEK_END=os.SEEK_END,
          FIOCLEX=0x5451, FIONCLEX=0x5450, IOCTL_UNHANDLED=IOCTL_UNHANDLED)


@operation(family="fd", blocking=True, fd="fd", offset="int", size="int")
def pread_u64(fd: int, offset: int = 0, size: int = 8) -> Result:
    """pread(2) of `size` bytes at `offset`; value is the host-order uint64 read."""
    buf = ctypes.create_string_buffer(max(size, 8))
    res = call(libc.pread, fd, buf, size, offset)
    if res.ok:
        res.value = _U64.unpack_from(buf)[0] if res.ret >= 8 else buf.raw[: res.ret].hex()
    return res


@operation(family="fd", blocking=True, fd="fd", value="int", offset="int", size="int")
def pwrite_u64(fd: int, value: int, offset: int = 0, size: int = 8) -> Result:
    """pwrite(2) at `offset` of `size` bytes whose first 8 hold `value` in host order."""
    return call(libc.pwrite, fd, u64_buffer(value, size), size, offset)


@operation(family="fd", fd="fd", offset="int", whence="flags")
def lseek(fd: int, offset: int = 0, whence: int = os.SEEK_SET) -> Result:
    """lseek(2); value is the resulting offset."""
    return call(libc.lseek, fd, offset, whence)


@operation(family="fd", blocking=True, fd_in="fd", fd_out="fd", size="int", flags="flags")
def splice(fd_in: int, fd_out: int, size: int = 8, flags: int = 0) -> Result:
    """splice(2) of up to `size` bytes from `fd_in` to `fd_out`, both at their own offset
    (NULL off_in and off_out); value is the byte count moved."""
    return call(libc.splice, fd_in, None, fd_out, None, size, flags)


@operation(family="fd", fd="fd", mode="flags", offset="int", length="int")
def fallocate(fd: int, mode: int = 0, offset: int = 0, length: int = 8) -> Result:
    """fallocate(2) of `length` bytes at `offset` with `mode`."""
    return call(libc.fallocate, fd, mode, offset, length)


@operation(family="fd", fd="fd", request="flags")
def ioctl(fd: int, request: int) -> Result:
    """ioctl(2) with a NULL argument: FIOCLEX and FIONCLEX (the descriptor's own
    close-on-exec flag) or IOCTL_UNHANDLED (a request no file here handles); others are
    refused."""
    check_ioctl(request)
    # ioctl is variadic: typed arguments here rather than argtypes on the shared libc.
    return call(libc.ioctl, ctypes.c_int(fd), ctypes.c_ulong(request), ctypes.c_void_p(None))
