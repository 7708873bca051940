"""An epoll instance as epoll(7) describes it: the interest list, the ready list,
level- and edge-triggered delivery, and EPOLLONESHOT.

Edge-triggered delivery follows the documentation's notion of an event: a change on
the watched file. For an eventfd that is each successful write (new data: EPOLLIN)
and each successful read (room to write: EPOLLOUT); for a timerfd, an expiration; for a
signalfd, a signal in its mask becoming pending.

The interest list is keyed as epoll(7) describes it, by file descriptor number *and* open
file description: a dup of a watched fd can be added beside it, and closing the watched fd
removes nothing while another descriptor keeps the description open ("events may be
reported for that file descriptor" still). Keys are (fd number, description name).

Where the pages are silent on whether something is an event (a signal outside a
signalfd's mask, a mask update), the model marks it MAYBE: epoll_wait may or may not
report the item then, and the model follows what the kernel did. It asserts only what is
documented, and still checks everything else about that wait.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP = 0x1, 0x4, 0x8, 0x10
EPOLLONESHOT, EPOLLET = 1 << 30, 1 << 31
ALWAYS = EPOLLERR | EPOLLHUP  # "epoll_wait(2) will always wait for this event"
NONE, MAYBE, EVENT = 0, 1, 2     # what arrived since the last edge-triggered report


@dataclass
class Item:
    events: int
    data: int
    edge: bool
    oneshot: bool
    armed: bool = True
    pending: int = NONE        # NONE, MAYBE or EVENT since the last edge-triggered report


Key = tuple[int, str]          # (fd number at EPOLL_CTL_ADD, name of the file description)


@dataclass
class EpollModel:
    interest: dict[Key, Item] = field(default_factory=dict)

    # -- epoll_ctl(2) ------------------------------------------------------------------

    def add(self, key: Key, events: int, data: int, edge: bool, oneshot: bool,
            ready_now: int) -> tuple[int, str | None]:
        if key in self.interest:
            return -1, "EEXIST"
        self.interest[key] = Item(events, data, edge, oneshot, pending=EVENT if ready_now else NONE)
        return 0, None

    def mod(self, key: Key, events: int, data: int, edge: bool, oneshot: bool,
            ready_now: int) -> tuple[int, str | None]:
        if key not in self.interest:
            return -1, "ENOENT"
        # MOD re-arms a one-shot item and re-evaluates readiness, as ADD does.
        self.interest[key] = Item(events, data, edge, oneshot, pending=EVENT if ready_now else NONE)
        return 0, None

    def delete(self, key: Key) -> tuple[int, str | None]:
        if key not in self.interest:
            return -1, "ENOENT"
        del self.interest[key]
        return 0, None

    def forget(self, description: str) -> None:
        """The description's last descriptor was closed: its items leave the interest list."""
        for key in [k for k in self.interest if k[1] == description]:
            del self.interest[key]

    # -- events on watched files --------------------------------------------------------

    def event(self, description: str, kind: int, certain: bool = True) -> None:
        """News on a file description, for every item watching it."""
        for (_, watched), item in self.interest.items():
            if watched == description and item.armed and (item.events | ALWAYS) & kind:
                item.pending = max(item.pending, EVENT if certain else MAYBE)

    # -- epoll_wait(2) -----------------------------------------------------------------

    def wait(self, readiness: dict[str, int]) -> tuple[dict[int, int], dict[int, int]]:
        # readiness: by description name
        """What one epoll_wait with timeout 0 (and room for every item) reports: the
        events it must report, and those it may (MAYBE), both as {data: revents}.
        Call settle() with what was reported."""
        must: dict[int, int] = {}
        may: dict[int, int] = {}
        for key, item in self.interest.items():
            revents = readiness[key[1]] & (item.events | ALWAYS)
            if not item.armed or not revents:
                continue
            if not item.edge or item.pending == EVENT:
                must[item.data] = revents
            elif item.pending == MAYBE:
                may[item.data] = revents
        return must, may

    def settle(self, reported: set[int]) -> None:
        """After a wait: every armed item's news has been looked at; a reported one-shot
        item is disarmed until the next EPOLL_CTL_MOD."""
        for item in self.interest.values():
            if not item.armed:
                continue
            item.pending = NONE
            if item.oneshot and item.data in reported:
                item.armed = False
