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

An epoll instance can itself be watched (epoll(7), Questions and answers: "If an epoll file
descriptor has events waiting, then it will indicate as being readable"): its readiness is
EPOLLIN while one of its items would be reported, and news for one of its items is news
for it. Where its own readiness hangs on a MAYBE, it is uncertain too.

A wait with room for fewer events than are ready reports some of them ("Up to maxevents
are returned", epoll_wait(2)); the others stay ready, and "successive epoll_wait() calls
will round robin through the set of ready file descriptors" (epoll_wait(2), NOTES): an item
left out stays ahead of those reported, while it stays ready.
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
    # data of the ready items the last full wait left out (see round_robin_problem)
    ahead: set[int] = field(default_factory=set)

    # -- epoll_ctl(2) ------------------------------------------------------------------

    def add(self, key: Key, events: int, data: int, edge: bool, oneshot: bool,
            ready_now: int, maybe_now: int = 0) -> tuple[int, str | None]:
        if key in self.interest:
            return -1, "EEXIST"
        self.interest[key] = Item(events, data, edge, oneshot,
                                  pending=_pending(ready_now, maybe_now))
        return 0, None

    def mod(self, key: Key, events: int, data: int, edge: bool, oneshot: bool,
            ready_now: int, maybe_now: int = 0) -> tuple[int, str | None]:
        if key not in self.interest:
            return -1, "ENOENT"
        # MOD re-arms a one-shot item and re-evaluates readiness, as ADD does.
        self.interest[key] = Item(events, data, edge, oneshot,
                                  pending=_pending(ready_now, maybe_now))
        return 0, None

    def delete(self, key: Key) -> tuple[int, str | None]:
        if key not in self.interest:
            return -1, "ENOENT"
        self.ahead.discard(self.interest.pop(key).data)
        return 0, None

    def forget(self, description: str) -> None:
        """The description's last descriptor was closed: its items leave the interest list."""
        for key in [k for k in self.interest if k[1] == description]:
            self.ahead.discard(self.interest.pop(key).data)

    def watches(self) -> set[str]:
        """The descriptions of the interest list."""
        return {description for _, description in self.interest}

    # -- events on watched files --------------------------------------------------------

    def event(self, description: str, kind: int, certain: bool = True) -> int:
        """News on a file description, for every item watching it; how sure the news is
        for this instance (NONE: no armed item heard of it), for instances watching it."""
        heard = NONE
        for (_, watched), item in self.interest.items():
            if watched == description and item.armed and (item.events | ALWAYS) & kind:
                news = EVENT if certain else MAYBE
                heard, item.pending = max(heard, news), max(item.pending, news)
        return heard

    # -- epoll_wait(2) -----------------------------------------------------------------

    def wait(self, readiness: dict[str, int], uncertain: dict[str, int] | None = None
             ) -> tuple[dict[int, int], dict[int, int]]:
        """What one epoll_wait with room for every item reports at once: the events it
        must report, and those it may (MAYBE), both as {data: revents}. `readiness` and
        `uncertain` (what a description may or may not show: a nested instance's EPOLLIN
        hanging on a MAYBE) are by description name. Call settle() with what was reported."""
        must: dict[int, int] = {}
        may: dict[int, int] = {}
        uncertain = uncertain or {}
        for key, item in self.interest.items():
            if not item.armed:
                continue
            mask = item.events | ALWAYS
            revents, perhaps = readiness[key[1]] & mask, uncertain.get(key[1], 0) & mask
            if revents and (not item.edge or item.pending == EVENT):
                must[item.data] = revents
            elif (revents and item.pending == MAYBE) or (
                    perhaps and (not item.edge or item.pending != NONE)):
                may[item.data] = revents | perhaps
        return must, may

    def settle(self, reported: set[int], must: dict[int, int], may: dict[int, int],
               full: bool) -> None:
        """After a wait: a reported item's news has been delivered (a one-shot item is
        disarmed until the next EPOLL_CTL_MOD). A wait that filled its buffer (`full`)
        leaves the ready items it did not report where they were; any other wait has
        looked at every item."""
        for item in self.interest.values():
            if not item.armed:
                continue
            if item.data in reported:
                item.pending = NONE
                if item.oneshot:
                    item.armed = False
            elif not (full and (item.data in must or item.data in may)):
                item.pending = NONE
        self.ahead = {d for d in must if d not in reported} if full else set()

    def still_ready(self, must: dict[int, int]) -> None:
        """Round robin holds for items that stayed ready: one that was not is queued
        again like any other when it is next ready."""
        self.ahead &= set(must)

    def round_robin_problem(self, must: dict[int, int], reported: dict[int, int]) -> str | None:
        """Items a full wait left out come before those it reported ("successive
        epoll_wait() calls will round robin through the set of ready file descriptors")."""
        ahead = self.ahead & set(must)
        if not ahead:
            return None
        left_out = sorted(ahead - set(reported))
        others = sorted(set(reported) - ahead)
        if left_out and others:
            return (f"reported {others} while {left_out}, ready and left out by the previous "
                    f"full wait, were not: successive waits must round robin through the "
                    f"ready items")
        return None


def _pending(ready_now: int, maybe_now: int) -> int:
    return EVENT if ready_now else MAYBE if maybe_now else NONE
