"""timerfd_create(2) as the man page describes it, for non-blocking timerfds whose timers
either expire at once or not within the program's lifetime.

Time is the one thing a model cannot share with the kernel, so programs use two kinds of
expiry only: "now" (1 ns ahead; the program waits, bounded, until the kernel shows the
expiration) and "later" (an hour ahead, with an hour's interval if periodic). Within
a program's few seconds the expiration count is then exact: 1 after "now", else 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from kit.model.eventfd import POLLIN, Expected

HOUR_NS = 3600 * 1_000_000_000


@dataclass
class TimerfdModel:
    clock: str = "CLOCK_MONOTONIC"
    ticks: int = 0            # expirations since the last settime or read
    armed: bool = False
    interval_ns: int = 0

    def settime(self, when: str, periodic: bool) -> Expected:
        # "the number of expirations that have occurred" counts from the last change of
        # settings made with timerfd_settime(): a new setting starts from zero.
        self.interval_ns = HOUR_NS if periodic else 0
        self.ticks = 1 if when == "now" else 0
        # A one-shot timer that has expired is disarmed; a periodic one re-arms itself.
        self.armed = when == "later" or (when == "now" and periodic)
        return Expected(0)

    def gettime(self) -> Expected:
        """{armed, interval_ns}: it_value is nonzero exactly while the timer is armed;
        it_interval is the interval last set, even while disarmed."""
        return Expected(0, value={"armed": self.armed, "interval_ns": self.interval_ns,
                                  "value_at_most_an_hour": True})

    def read(self) -> Expected:
        if not self.ticks:
            return Expected(-1, "EAGAIN")
        ticks, self.ticks = self.ticks, 0
        return Expected(8, value=ticks)

    def readiness(self) -> int:
        return POLLIN if self.ticks else 0
