"""An epoll instance as epoll(7) describes it: the interest list, the ready list,
level- and edge-triggered delivery, and EPOLLONESHOT.

Edge-triggered delivery follows the documentation's notion of an event: a change on
the watched file. For an eventfd that is each successful write (new data: EPOLLIN)
and each successful read (room to write: EPOLLOUT).
"""

from __future__ import annotations

from dataclasses import dataclass, field

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x4, 0x8, 0x10
EPOLLONESHOT, EPOLLET = 1 << 30, 1 << 31
ALWAYS = EPOLLERR | EPOLLHUP  # "epoll_wait(2) will always wait for this event"


@dataclass
class Item:
    events: int
    data: int
    edge: bool
    oneshot: bool
    armed: bool = True
    pending: bool = False      # an event arrived since the last edge-triggered report


@dataclass
class EpollModel:
    interest: dict[str, Item] = field(default_factory=dict)

    # -- epoll_ctl(2) ------------------------------------------------------------------

    def add(self, key: str, events: int, data: int, edge: bool, oneshot: bool,
            ready_now: int) -> tuple[int, str | None]:
        if key in self.interest:
            return -1, "EEXIST"
        self.interest[key] = Item(events, data, edge, oneshot, pending=bool(ready_now))
        return 0, None

    def mod(self, key: str, events: int, data: int, edge: bool, oneshot: bool,
            ready_now: int) -> tuple[int, str | None]:
        if key not in self.interest:
            return -1, "ENOENT"
        # MOD re-arms a one-shot item and re-evaluates readiness, as ADD does.
        self.interest[key] = Item(events, data, edge, oneshot, pending=bool(ready_now))
        return 0, None

    def delete(self, key: str) -> tuple[int, str | None]:
        if key not in self.interest:
            return -1, "ENOENT"
        del self.interest[key]
        return 0, None

    def forget(self, key: str) -> None:
        """The watched file's last descriptor was closed: it leaves the interest list."""
        self.interest.pop(key, None)

    # -- events on watched files --------------------------------------------------------

    def event(self, key: str, kind: int) -> None:
        item = self.interest.get(key)
        if item and item.armed and (item.events | ALWAYS) & kind:
            item.pending = True

    # -- epoll_wait(2) -----------------------------------------------------------------

    def wait(self, readiness: dict[str, int], maxevents: int) -> dict[int, int]:
        """Events reported by one epoll_wait with timeout 0 (maxevents >= items)."""
        out: dict[int, int] = {}
        for key, item in self.interest.items():
            if not item.armed:
                continue
            revents = readiness[key] & (item.events | ALWAYS)
            if not revents or (item.edge and not item.pending):
                item.pending = False
                continue
            item.pending = False
            out[item.data] = revents
            if item.oneshot:
                item.armed = False
            if len(out) == maxevents:
                break
        return out
