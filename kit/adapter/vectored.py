"""Vectored reads and writes of one 8-byte value: readv, writev and preadv2, with the value
split across iovecs of the given sizes.

Whether a split transfer works depends on the file's operations, which changed between
releases: a file with ->read_iter takes the iovecs as one buffer; one with only ->read gets
one call per iovec, so a 4-byte first part is a short buffer (EINVAL on an eventfd). And
preadv2(RWF_NOWAIT) needs FMODE_NOWAIT, which came with ->read_iter.
"""

from __future__ import annotations

import ctypes
import os
import struct

from kit.adapter.libc import Result, call, libc
from kit.registry import constants, operation

constants(RWF_NOWAIT=getattr(os, "RWF_NOWAIT", 0x8), RWF_HIPRI=getattr(os, "RWF_HIPRI", 0x1))


class _Iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


libc.readv.argtypes = [ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_int]
libc.readv.restype = ctypes.c_ssize_t
libc.writev.argtypes = [ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_int]
libc.writev.restype = ctypes.c_ssize_t
libc.preadv2.argtypes = [ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_int, ctypes.c_long,
                         ctypes.c_int]
libc.preadv2.restype = ctypes.c_ssize_t

_U64 = struct.Struct("=Q")
MAX_PARTS = 16        # enough to split 8 bytes any way; the kernel's own limit is 1024


def _parts(split: list) -> list[int]:
    sizes = [int(n) for n in split]
    if not sizes or len(sizes) > MAX_PARTS or any(n < 0 or n > 64 for n in sizes):
        raise ValueError(f"split must be 1 to {MAX_PARTS} iovec sizes of 0 to 64 bytes, "
                         f"got {split!r}")
    return sizes


def _iovecs(buffers: list[ctypes.Array], sizes: list[int]):
    vec = (_Iovec * len(sizes))()
    for i, (buf, size) in enumerate(zip(buffers, sizes)):
        vec[i].iov_base = ctypes.cast(buf, ctypes.c_void_p)
        vec[i].iov_len = size
    return vec


def _read_into(fn, fd: int, split: list, *extra) -> Result:
    sizes = _parts(split)
    buffers = [ctypes.create_string_buffer(max(n, 1)) for n in sizes]
    res = call(fn, fd, _iovecs(buffers, sizes), len(sizes), *extra)
    if res.ok:
        data = b"".join(buf.raw[:n] for buf, n in zip(buffers, sizes))[: res.ret]
        res.value = _U64.unpack_from(data)[0] if len(data) >= 8 else data.hex()
    return res


@operation(family="fd", blocking=True, fd="fd", split="list")
def readv_u64(fd: int, split: list = (8,)) -> Result:
    """readv(2) into iovecs of the sizes in `split` (e.g. [4, 4]); value is the host-order
    uint64 the bytes read make, in order."""
    return _read_into(libc.readv, fd, split)


@operation(family="fd", blocking=True, fd="fd", split="list", flags="flags")
def preadv2_u64(fd: int, split: list = (8,), flags: int = 0) -> Result:
    """preadv2(2) at the current position (offset -1) into iovecs of the sizes in `split`,
    with `flags` (RWF_NOWAIT, ...); value as for readv_u64."""
    return _read_into(libc.preadv2, fd, split, -1, flags)


@operation(family="fd", blocking=True, fd="fd", value="int", split="list")
def writev_u64(fd: int, value: int, split: list = (8,)) -> Result:
    """writev(2) of the 8 host-order bytes of `value`, split across iovecs of the sizes in
    `split` (which must add up to 8)."""
    sizes = _parts(split)
    if sum(sizes) != 8:
        raise ValueError(f"split must add up to the 8 bytes of the value, got {split!r}")
    data, buffers, at = _U64.pack(value & 0xFFFFFFFFFFFFFFFF), [], 0
    for n in sizes:
        buffers.append(ctypes.create_string_buffer(data[at:at + n], max(n, 1)))
        at += n
    return call(libc.writev, fd, _iovecs(buffers, sizes), len(sizes))
