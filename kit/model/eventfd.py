"""eventfd(2) as the man page describes it, for non-blocking descriptors."""

from __future__ import annotations

from dataclasses import dataclass

COUNTER_MAX = 0xFFFFFFFFFFFFFFFE  # "the largest unsigned 64-bit value minus 1"
POLLIN, POLLOUT = 0x1, 0x4


@dataclass
class Expected:
    ret: int
    errno: str | None = None
    value: object = None


@dataclass
class EventfdModel:
    counter: int
    semaphore: bool = False

    def write(self, value: int) -> Expected:
        if value == 0xFFFFFFFFFFFFFFFF:
            return Expected(-1, "EINVAL")
        if self.counter + value > COUNTER_MAX:
            return Expected(-1, "EAGAIN")       # non-blocking: would block
        self.counter += value
        return Expected(8, value=None)

    def read(self) -> Expected:
        if self.counter == 0:
            return Expected(-1, "EAGAIN")
        taken = 1 if self.semaphore else self.counter
        self.counter -= taken
        return Expected(8, value=taken)

    def readiness(self) -> int:
        """POLLIN if the counter is above 0; POLLOUT if a write of 1 would not block."""
        return (POLLIN if self.counter > 0 else 0) | (POLLOUT if self.counter < COUNTER_MAX
                                                      else 0)
