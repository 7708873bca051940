"""The program `exec_signal_probe` executes (by path, `python -I`): it reads, without
blocking, the signals it can through a signalfd, and prints what it read as JSON.

Standalone on purpose (the standard library only, nothing of the kit): what it reports
must come from the kernel's state after execve(2), not from anything inherited in Python.
Arguments: `--fd N` reads the inherited signalfd N; `--mask N,M` makes a new signalfd for
signals N, M. Importing this module (kit.adapter imports all of its modules) does nothing.
"""

import ctypes
import json
import os
import select
import signal
import struct
import sys

RECORD = 128                  # sizeof(struct signalfd_siginfo)
HEAD = struct.Struct("=IiiII")  # ssi_signo, ssi_errno, ssi_code, ssi_pid, ssi_uid


def _masks() -> tuple:
    """The pending (sigpending(2)) and blocked (sigprocmask(2)) sets, as signal numbers."""
    pending = sorted(int(s) for s in signal.sigpending())
    blocked = sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, []))
    return pending, blocked


def _new_signalfd(numbers: list) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    mask = (ctypes.c_uint64 * 16)()
    for number in numbers:
        mask[0] |= 1 << (number - 1)
    fd = libc.signalfd(-1, ctypes.byref(mask), os.O_NONBLOCK | os.O_CLOEXEC)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "signalfd")
    return fd


def _read_all(fd: int) -> list:
    """Every record readable now: poll first, so a blocking inherited descriptor (whose
    flags the parent shares) is never made nonblocking, and never blocks."""
    records = []
    while select.select([fd], [], [], 0)[0]:
        raw = os.read(fd, RECORD * 8)
        for at in range(0, len(raw) - RECORD + 1, RECORD):
            signo, _errno, code, pid, _uid = HEAD.unpack_from(raw, at)
            records.append({"signo": signo, "code": code, "pid": pid})
    return records


def main(argv: list) -> dict:
    pending, blocked = _masks()
    if argv[:1] == ["--fd"]:
        fd = int(argv[1])
    else:
        fd = _new_signalfd([int(n) for n in argv[1].split(",") if n])
    records = _read_all(fd)
    return {"count": len(records), "records": dict(enumerate(records)), "pid": os.getpid(),
            "pending": pending, "blocked": blocked}


if __name__ == "__main__":
    try:
        result = main(sys.argv[1:])
    except OSError as exc:
        result = {"error": f"{exc.strerror or exc}"}
    sys.stdout.write(json.dumps(result))
