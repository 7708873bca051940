"""Pipes (pipe(7)) and connected UNIX stream socket pairs (unix(7), socketpair(2)) as
epoll sees them: the readiness of each end, what reads and writes return, and which
operations are news for an edge-triggered item.

Programs keep every channel far from full (writes of a few bytes), so writability never
changes with the amount buffered. What the pages promise, and the model checks:
- a read returns what is buffered, up to the size asked, EAGAIN when nothing is and a
  writer remains (non-blocking), 0 (end of file) once the other end is gone: "If all file
  descriptors referring to the write end of a pipe have been closed, then an attempt to
  read(2) from the pipe will see end-of-file" (pipe(7));
- a write to a pipe whose read end is closed fails with EPIPE (pipe(7): "If all file
  descriptors referring to the read end of a pipe have been closed, then a write(2) will
  cause a SIGPIPE signal ... If the calling process is ignoring this signal, then write(2)
  fails with the error EPIPE"), and so does a write on a socket shut down for writing or
  whose peer is gone (send(2), EPIPE);
- readiness as poll(2) defines it: POLLHUP on the read end once the write end is closed,
  POLLERR on the write end once the read end is (poll(2): "This bit is also set for a file
  descriptor referring to the write end of a pipe when the read end has been closed");
  EPOLLRDHUP once the peer "closed connection, or shut down writing half of connection"
  (epoll_ctl(2)), with EPOLLIN (a read then returns end of file); EPOLLHUP once both
  directions are shut down.

Implementation behaviour, from the Linux source where the pages are silent (each marked
where it is modelled): the write end of a pipe without readers still polls writable;
closing a socket with unread data gives its peer ECONNRESET (EPOLLERR until a read
returns that error, net/unix/af_unix.c, unix_release_sock).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kit.model.eventfd import Expected

EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP = (0x1, 0x2, 0x4, 0x8, 0x10,
                                                               0x2000)
ALL = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP
Wakes = list  # [(end, event kinds)]: the ends an operation wakes, and with what


@dataclass
class Pipe:
    buffered: int = 0
    reader: bool = True          # the read end's open file description still exists
    writer: bool = True


@dataclass(eq=False)
class PipeEnd:
    pipe: Pipe
    reading: bool
    peer: PipeEnd | None = field(default=None, repr=False)   # the other end

    def write(self, size: int) -> Expected:
        if self.reading:
            return Expected(-1, "EBADF")      # write(2): "not open for writing"
        if not self.pipe.reader:
            return Expected(-1, "EPIPE")
        self.pipe.buffered += size
        return Expected(size, value=size)

    def read(self, size: int) -> Expected:
        if not self.reading:
            return Expected(-1, "EBADF")      # read(2): "not open for reading"
        if self.pipe.buffered:
            taken = min(size, self.pipe.buffered)
            self.pipe.buffered -= taken
            return Expected(taken, value=taken)
        return Expected(0, value=0) if not self.pipe.writer else Expected(-1, "EAGAIN")

    def readiness(self) -> int:
        if self.reading:
            return (EPOLLIN if self.pipe.buffered else 0) | (0 if self.pipe.writer else EPOLLHUP)
        # Writable while not full, readers or not (implementation: fs/pipe.c, pipe_poll).
        return EPOLLOUT | (0 if self.pipe.reader else EPOLLERR)

    def release(self) -> Wakes:
        """The end's last descriptor closed. Linux wakes the other end then for every
        event (fs/pipe.c, pipe_release): news of any kind, certain where readiness changed."""
        if self.reading:
            self.pipe.reader = False
        else:
            self.pipe.writer = False
        return [(self.peer, ALL)]

    def wakes_on_write(self) -> Wakes:
        # A write to a pipe that already held data wakes readers only where someone polls
        # it (fs/pipe.c, pipe->poll_usage, 3a34b13a88ca): not documented either way.
        return [(self.peer, EPOLLIN)]

    def wakes_on_read(self) -> Wakes:
        return []                              # never full: room to write was always there

    def wakes_on_shutdown(self) -> Wakes:
        return []



@dataclass
class SocketPair:
    queued: list[int] = field(default_factory=lambda: [0, 0])   # bytes waiting for side i
    shut_wr: list[bool] = field(default_factory=lambda: [False, False])
    closed: list[bool] = field(default_factory=lambda: [False, False])
    reset: list[bool] = field(default_factory=lambda: [False, False])   # ECONNRESET pending


@dataclass(eq=False)
class SocketEnd:
    pair: SocketPair
    side: int
    peer: SocketEnd | None = field(default=None, repr=False)

    @property
    def other(self) -> int:
        return 1 - self.side

    def _receive_shut(self) -> bool:
        return self.pair.shut_wr[self.other] or self.pair.closed[self.other]

    def _send_shut(self) -> bool:
        return self.pair.shut_wr[self.side] or self.pair.closed[self.other]

    def write(self, size: int) -> Expected:
        if self._send_shut():
            return Expected(-1, "EPIPE")
        self.pair.queued[self.other] += size
        return Expected(size, value=size)

    def read(self, size: int) -> Expected:
        pair, side = self.pair, self.side
        if pair.queued[side]:
            taken = min(size, pair.queued[side])
            pair.queued[side] -= taken
            return Expected(taken, value=taken)
        if pair.reset[side]:
            pair.reset[side] = False           # reported once (implementation, see above)
            return Expected(-1, "ECONNRESET")
        return Expected(0, value=0) if self._receive_shut() else Expected(-1, "EAGAIN")

    def shutdown(self) -> Expected:
        """shutdown(SHUT_WR)."""
        self.pair.shut_wr[self.side] = True
        return Expected(0)

    def readiness(self) -> int:
        pair, side = self.pair, self.side
        mask = EPOLLOUT                        # a few bytes never fill the buffer
        if pair.queued[side]:
            mask |= EPOLLIN
        if self._receive_shut():
            mask |= EPOLLIN | EPOLLRDHUP
            if self._send_shut():
                mask |= EPOLLHUP
        if pair.reset[side]:
            mask |= EPOLLERR
        return mask

    def release(self) -> Wakes:
        pair, side = self.pair, self.side
        pair.closed[side] = True
        if pair.queued[side]:
            pair.reset[self.other] = True      # unread data: the peer sees a reset
        return [(self.peer, ALL)]

    def wakes_on_write(self) -> Wakes:
        # Every write wakes the peer's readers (sk_data_ready), new data or not.
        return [(self.peer, EPOLLIN | EPOLLPRI)]

    def wakes_on_read(self) -> Wakes:
        # Data read frees the writer's buffer space: Linux wakes its writers then
        # (net/unix/af_unix.c, unix_write_space), though writability never changed.
        return [(self.peer, EPOLLOUT)]

    def wakes_on_shutdown(self) -> Wakes:
        # Both ends' state changes wake every waiter (sk_state_change).
        return [(self, ALL), (self.peer, ALL)]



def pipe_ends() -> tuple[PipeEnd, PipeEnd]:
    pipe = Pipe()
    read, write = PipeEnd(pipe, True), PipeEnd(pipe, False)
    read.peer, write.peer = write, read
    return read, write


def socket_ends() -> tuple[SocketEnd, SocketEnd]:
    pair = SocketPair()
    a, b = SocketEnd(pair, 0), SocketEnd(pair, 1)
    a.peer, b.peer = b, a
    return a, b


End = PipeEnd | SocketEnd
