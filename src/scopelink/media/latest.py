"""A "latest value wins" slot: producers replace the value, consumers always see the newest.

This is how frames move without queues: the imaging client publishes each decoded preview frame
into one slot, and every consumer (MJPEG, WebRTC, a benchmark) waits for a value newer than the
one it last saw. A slow consumer skips values instead of falling behind; memory never grows.
Use it from one event loop.

A producer that stops closes its slot (its viewers' streams end); one that starts again
`renew()`s it: the new slot is linked from the old one, so a long-lived follower (`follow()`:
an encoder, the pipeline) moves on to it at once, without polling for the replacement.

Skipping is right for pictures and wrong for a compressed stream, where a skipped frame makes
the next ones undecodable. A consumer that must see every value `tap()`s the slot instead: its
callback runs inside `publish()`, for every value, and carries over to a renewed slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Generic, NamedTuple, TypeVar

T = TypeVar("T")


class SlotClosedError(Exception):
    """The slot was closed; no newer value will come."""


class Published(NamedTuple, Generic[T]):
    """A value and its sequence number (1 for the first value ever published)."""

    seq: int
    value: T


class LatestValue(Generic[T]):
    """Holds the newest published value; `await next(after_seq)` waits for a newer one."""

    def __init__(self) -> None:
        self._latest: Published[T] | None = None
        self._closed = False
        self._successor: LatestValue[T] | None = None
        self._renewed = asyncio.Event()
        self._taps: list[Callable[[Published[T]], None]] = []
        # Replaced on every publish, so a waiter wakes once per value it may have missed.
        self._changed = asyncio.Event()

    @property
    def seq(self) -> int:
        """How many values were ever published (also the newest value's sequence number)."""
        return 0 if self._latest is None else self._latest.seq

    @property
    def latest(self) -> Published[T] | None:
        """The newest value, or None before the first publish."""
        return self._latest

    @property
    def closed(self) -> bool:
        return self._closed

    def publish(self, value: T) -> int:
        """Replace the value and wake the waiters; returns the new sequence number."""
        if self._closed:
            raise SlotClosedError("publish on a closed slot")
        self._latest = latest = Published(self.seq + 1, value)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for tap in list(self._taps):
            tap(latest)
        return latest.seq

    def tap(self, callback: Callable[[Published[T]], None]) -> Callable[[], None]:
        """Call `callback(item)` for every value published from now on, inside `publish()`
        (keep it short; it must not raise), here and in the slots that renew this one. Returns
        the function that removes the tap."""
        self._taps.append(callback)

        def untap() -> None:
            slot: LatestValue[T] | None = self
            while slot is not None:
                if callback in slot._taps:
                    slot._taps.remove(callback)
                slot = slot._successor

        return untap

    def close(self) -> None:
        """Wake every waiter: `next()` raises SlotClosedError, iteration ends."""
        self._closed = True
        self._changed.set()

    def renew(self) -> LatestValue[T]:
        """Close this slot (if open) and return a new one that followers move on to."""
        self.close()
        if self._successor is None:
            self._successor = LatestValue()
            self._successor._taps = self._taps
            self._renewed.set()
        return self._successor

    async def successor(self) -> LatestValue[T]:
        """The slot that replaced this one, waiting until `renew()` makes it."""
        await self._renewed.wait()
        assert self._successor is not None
        return self._successor

    async def next(self, after_seq: int = 0) -> Published[T]:
        """The newest value with a sequence number above `after_seq`, waiting for one if needed.

        A value published before `close()` is still handed out; after that SlotClosedError.
        """
        while True:
            latest = self._latest
            if latest is not None and latest.seq > after_seq:
                return latest
            if self._closed:
                raise SlotClosedError("the slot is closed")
            await self._changed.wait()

    async def values(self, after_seq: int = 0) -> AsyncIterator[Published[T]]:
        """Iterate the newest values (skipping any we were too slow for) until closed."""
        while True:
            try:
                item = await self.next(after_seq)
            except SlotClosedError:
                return
            after_seq = item.seq
            yield item

    def __aiter__(self) -> AsyncIterator[Published[T]]:
        return self.values()


async def follow(slot: LatestValue[T], *, fresh: bool = False) -> AsyncIterator[Published[T]]:
    """The newest values of `slot` and of every slot that renews it, for as long as it lives.

    `fresh`: start after the value published now (an old frame would show the past). Each slot
    change starts afresh: its sequence numbers begin at 1 again.
    """
    seen = slot.seq if fresh else 0
    while True:
        try:
            item = await slot.next(seen)
        except SlotClosedError:
            slot, seen = await slot.successor(), 0
            continue
        seen = item.seq
        yield item
