"""Companions for readiness experiments: connected TCP sockets on loopback, send(2) with
flags (MSG_OOB for EPOLLPRI), shutdown(2) (EPOLLRDHUP, EPOLLHUP), byte-count reads and
writes on pipes and sockets (fill to EAGAIN, drain to EAGAIN) whose values are counts
rather than the bytes themselves, and passing a descriptor over a UNIX socket (SCM_RIGHTS)."""

from __future__ import annotations

import ctypes
import errno as _errno
import fcntl as _fcntl
import os
import socket
import struct

from kit.adapter.libc import Result, call, from_oserror, libc
from kit.registry import constants, operation

constants(MSG_OOB=socket.MSG_OOB, MSG_DONTWAIT=socket.MSG_DONTWAIT,
          MSG_PEEK=socket.MSG_PEEK, SHUT_RD=socket.SHUT_RD, SHUT_WR=socket.SHUT_WR,
          SHUT_RDWR=socket.SHUT_RDWR, SOCK_SEQPACKET=socket.SOCK_SEQPACKET)

libc.send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.send.restype = ctypes.c_ssize_t
libc.recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.recv.restype = ctypes.c_ssize_t
libc.shutdown.argtypes = [ctypes.c_int, ctypes.c_int]

# A fill never writes more than this, whatever the descriptor (a safety bound).
FILL_LIMIT = 64 << 20


def _oserror(exc: OSError) -> Result:
    return Result(ret=-1, errno=_errno.errorcode.get(exc.errno or 0, "EIO"))


def _apply_flags(fd: int, flags: int) -> None:
    if flags & socket.SOCK_NONBLOCK:
        os.set_blocking(fd, False)
    if flags & socket.SOCK_CLOEXEC:
        _fcntl.fcntl(fd, _fcntl.F_SETFD, _fcntl.FD_CLOEXEC)
    else:
        _fcntl.fcntl(fd, _fcntl.F_SETFD, 0)


@operation(family="socket", flags="flags")
def tcp_pair(flags: int = 0) -> Result:
    """A connected TCP pair on 127.0.0.1, the listener already closed: value is
    {client, server}. `flags` (SOCK_NONBLOCK, SOCK_CLOEXEC) apply to both ends."""
    listener = client = server = None
    try:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.settimeout(5.0)
        client.connect(listener.getsockname())
        listener.settimeout(5.0)
        server, _ = listener.accept()
        for sock in (client, server):
            sock.setblocking(True)
            _apply_flags(sock.fileno(), flags)
        fds = {"client": client.detach(), "server": server.detach()}
    except OSError as exc:
        for sock in (client, server):
            if sock is not None:
                sock.close()
        return _oserror(exc)
    finally:
        if listener is not None:
            listener.close()
    return Result(ret=0, value=fds, created_fds=list(fds.values()))


@operation(family="socket", blocking=True, fd="fd", data="str", flags="flags")
def send(fd: int, data: str, flags: int = 0) -> Result:
    """send(2) of the UTF-8 bytes of `data` with `flags` (MSG_OOB, MSG_DONTWAIT);
    returns the byte count."""
    raw = data.encode()
    return call(libc.send, fd, ctypes.create_string_buffer(raw, max(len(raw), 1)), len(raw),
                flags)


@operation(family="socket", blocking=True, fd="fd", size="int", flags="flags")
def recv(fd: int, size: int = 4096, flags: int = 0) -> Result:
    """recv(2) into a `size`-byte buffer with `flags` (MSG_OOB, MSG_PEEK, MSG_DONTWAIT);
    value is the bytes received, as text."""
    buf = ctypes.create_string_buffer(max(size, 1))
    res = call(libc.recv, fd, buf, size, flags)
    if res.ok:
        res.value = buf.raw[: res.ret].decode(errors="replace")
    return res


@operation(family="socket", fd="fd", how="flags")
def shutdown(fd: int, how: int) -> Result:
    """shutdown(2) with SHUT_RD, SHUT_WR or SHUT_RDWR."""
    return call(libc.shutdown, fd, how)


@operation(family="fd", blocking=True, fd="fd", size="int")
def write_bytes(fd: int, size: int) -> Result:
    """write(2) of `size` bytes ('x' each); returns (and its value is) the count written."""
    buf = ctypes.create_string_buffer(b"x" * max(size, 1), max(size, 1))
    return call(libc.write, fd, buf, size)


@operation(family="fd", blocking=True, fd="fd", size="int")
def read_bytes(fd: int, size: int) -> Result:
    """read(2) with a `size`-byte buffer; returns (and its value is) the count read."""
    buf = ctypes.create_string_buffer(max(size, 1))
    return call(libc.read, fd, buf, size)


@operation(family="fd", blocking=True, fd="fd", chunk="int")
def fill(fd: int, chunk: int = 65536) -> Result:
    """write(2) `chunk`-byte blocks until the descriptor says EAGAIN (it must be
    nonblocking); value is the total written. Another error ends it with that errno."""
    buf = ctypes.create_string_buffer(b"x" * chunk, chunk)
    total = 0
    while total < FILL_LIMIT:
        res = call(libc.write, fd, buf, chunk)
        if res.errno == "EAGAIN":
            break
        if not res.ok:
            return res
        total += res.ret
    else:
        return Result(ret=-1, errno="EFBIG", value=f"still writable after {FILL_LIMIT} bytes")
    return Result(ret=total, value=total)


@operation(family="fd", blocking=True, fd="fd", chunk="int")
def drain(fd: int, chunk: int = 65536) -> Result:
    """read(2) `chunk`-byte blocks until EAGAIN or end of file (it must be nonblocking);
    value is the total read. Another error ends it with that errno."""
    buf = ctypes.create_string_buffer(chunk)
    total = 0
    while True:
        res = call(libc.read, fd, buf, chunk)
        if res.errno == "EAGAIN" or res.ret == 0:
            break
        if not res.ok:
            return res
        total += res.ret
    return Result(ret=total, value=total)


def _unix(fd: int) -> socket.socket:
    # A socket object on a duplicate: Python's sendmsg/recvmsg are libc's (an LD_PRELOAD
    # interposer still sees them), and closing the object leaves the spec's fd open.
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, fileno=os.dup(fd))


@operation(family="socket", blocking=True, sock="fd", fd="fd")
def send_fd(sock: int, fd: int) -> Result:
    """sendmsg(2) of one byte with `fd` attached as SCM_RIGHTS, on the UNIX socket `sock`
    (e.g. one end of a socketpair); returns the byte count (1)."""
    try:
        with _unix(sock) as channel:
            sent = socket.send_fds(channel, [b"x"], [fd])
        return Result(ret=sent, value=sent)
    except OSError as exc:
        return from_oserror(exc)


@operation(family="socket", blocking=True, sock="fd")
def recv_fd(sock: int) -> Result:
    """recvmsg(2) of one byte and one SCM_RIGHTS descriptor from the UNIX socket `sock`;
    value is the new descriptor in this process (EBADMSG if none came with the byte)."""
    try:
        with _unix(sock) as channel:
            data, fds, _flags, _addr = socket.recv_fds(channel, 1, 1)
    except OSError as exc:
        return from_oserror(exc)
    if not fds:
        return Result(ret=-1, errno="EBADMSG", value=f"received {data!r} without a descriptor")
    res = Result(ret=fds[0], value=fds[0])
    res.created_fds.append(fds[0])
    return res


# -- a listening socket and its pending connections --------------------------------------

libc.accept4.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]


def _handed_over(sock: socket.socket, flags: int) -> Result:
    """The socket's descriptor for the spec: blocking, with `flags` applied, out of Python's
    hands (closing the object no longer closes it)."""
    sock.setblocking(True)
    _apply_flags(sock.fileno(), flags)
    fd = sock.detach()
    return Result(ret=fd, value=fd, created_fds=[fd])


@operation(family="socket", flags="flags", backlog="int")
def tcp_listen(flags: int = 0, backlog: int = 4) -> Result:
    """A TCP socket listening on 127.0.0.1 (an ephemeral port); value is its descriptor.
    `flags` (SOCK_NONBLOCK, SOCK_CLOEXEC) apply to it."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(backlog)
            return _handed_over(listener, flags)
    except OSError as exc:
        return _oserror(exc)


@operation(family="socket", blocking=True, listener="fd", flags="flags")
def tcp_connect(listener: int, flags: int = 0) -> Result:
    """A new TCP socket connected to the address `listener` (the spec's own listening
    socket) is bound to: loopback only, never an address a spec names. The handshake is
    done when it returns; the connection waits in the listener's queue until accept.
    value is the client's descriptor."""
    try:
        view_fd = os.dup(listener)
        try:
            view = socket.socket(fileno=view_fd)
        except OSError:
            os.close(view_fd)           # not a socket: the dup must not outlive the call
            raise
        with view:
            address = view.getsockname() if view.family == socket.AF_INET else ("", 0)
        if address[0] != "127.0.0.1":   # only tcp_listen's sockets are meant here
            return Result(ret=-1, errno="EINVAL", value=f"{address!r} is not loopback TCP")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.settimeout(5.0)
            client.connect(address)
            return _handed_over(client, flags)
    except OSError as exc:
        return _oserror(exc)


@operation(family="socket", blocking=True, fd="fd", flags="flags")
def accept(fd: int, flags: int = 0) -> Result:
    """accept4(2) on the listening socket `fd` with `flags` (SOCK_NONBLOCK, SOCK_CLOEXEC),
    no address asked for; value is the new connection's descriptor."""
    res = call(libc.accept4, fd, None, None, flags)
    if res.ok:
        res.created_fds.append(res.ret)
    return res


@operation(family="socket", fd="fd")
def linger_reset(fd: int) -> Result:
    """setsockopt(2) SO_LINGER on with a zero timeout: the socket's close(2) then aborts
    the connection with a reset (RST) instead of the orderly FIN. 0 on success."""
    try:
        with socket.socket(fileno=os.dup(fd)) as view:
            view.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError as exc:
        return _oserror(exc)
    return Result(ret=0)
