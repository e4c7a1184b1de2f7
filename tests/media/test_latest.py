"""The "latest value wins" slot that carries frames to consumers without queues."""

from __future__ import annotations

import asyncio

import pytest

from scopelink.media.latest import LatestValue, SlotClosedError, follow


async def test_consumer_gets_the_newest_value_not_a_backlog() -> None:
    slot: LatestValue[str] = LatestValue()
    for value in ("a", "b", "c"):
        slot.publish(value)
    item = await slot.next(0)
    assert (item.seq, item.value) == (3, "c")
    assert slot.seq == 3


async def test_next_waits_for_a_value_newer_than_the_one_seen() -> None:
    slot: LatestValue[int] = LatestValue()
    slot.publish(1)
    waiter = asyncio.create_task(slot.next(1))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    slot.publish(2)
    item = await asyncio.wait_for(waiter, 1)
    assert (item.seq, item.value) == (2, 2)


async def test_slow_consumer_skips_values_and_fast_one_sees_all() -> None:
    slot: LatestValue[int] = LatestValue()
    fast: list[int] = []
    slow: list[int] = []

    async def consume(out: list[int], delay: float) -> None:
        async for item in slot:
            out.append(item.value)
            await asyncio.sleep(delay)

    tasks = [
        asyncio.create_task(consume(fast, 0)),
        asyncio.create_task(consume(slow, 0.05)),
    ]
    await asyncio.sleep(0)
    for value in range(1, 21):
        slot.publish(value)
        await asyncio.sleep(0.005)
    slot.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert fast == list(range(1, 21))
    assert slow[-1] == 20
    assert len(slow) < 10
    assert slow == sorted(slow)


async def test_close_wakes_waiters_with_an_error() -> None:
    slot: LatestValue[int] = LatestValue()
    waiter = asyncio.create_task(slot.next(0))
    await asyncio.sleep(0)
    slot.close()
    with pytest.raises(SlotClosedError):
        await asyncio.wait_for(waiter, 1)
    with pytest.raises(SlotClosedError):
        slot.publish(1)


async def test_value_published_before_close_is_still_delivered() -> None:
    slot: LatestValue[int] = LatestValue()
    slot.publish(7)
    slot.close()
    assert (await slot.next(0)).value == 7
    assert [item.value async for item in slot] == [7]
    with pytest.raises(SlotClosedError):
        await slot.next(1)


async def test_iteration_can_start_after_a_known_sequence_number() -> None:
    slot: LatestValue[int] = LatestValue()
    slot.publish(1)
    slot.publish(2)
    seen: list[int] = []

    async def consume() -> None:
        async for item in slot.values(after_seq=slot.seq):
            seen.append(item.value)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    slot.publish(3)
    await asyncio.sleep(0)
    slot.close()
    await asyncio.wait_for(task, 1)
    assert seen == [3]


def test_latest_is_none_until_the_first_publish() -> None:
    slot: LatestValue[bytes] = LatestValue()
    assert slot.latest is None
    assert slot.seq == 0
    slot.publish(b"x")
    assert slot.latest is not None and slot.latest.value == b"x"


async def test_a_follower_moves_on_to_the_renewed_slot_at_once() -> None:
    slot: LatestValue[int] = LatestValue()
    seen: list[int] = []
    got_two = asyncio.Event()

    async def consume() -> None:
        async for item in follow(slot):
            seen.append(item.value)
            if item.value == 2:
                got_two.set()

    task = asyncio.create_task(consume())
    slot.publish(1)
    await asyncio.sleep(0.01)
    renewed = slot.renew()
    assert slot.closed and not renewed.closed
    assert slot.renew() is renewed  # renewing twice gives the same successor
    renewed.publish(2)
    # No polling interval: the follower sees the new slot's value within a loop turn or two.
    await asyncio.wait_for(got_two.wait(), 0.05)
    task.cancel()
    assert seen == [1, 2]


async def test_a_fresh_follower_skips_the_value_already_there() -> None:
    slot: LatestValue[int] = LatestValue()
    slot.publish(1)
    items = follow(slot, fresh=True)
    waiter = asyncio.ensure_future(anext(items))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    slot.publish(2)
    assert (await asyncio.wait_for(waiter, 1)).value == 2


async def test_a_tap_sees_every_value_even_in_a_burst_and_follows_renewals() -> None:
    slot: LatestValue[int] = LatestValue()
    seen: list[int] = []
    untap = slot.tap(lambda item: seen.append(item.value))
    for value in (1, 2, 3):  # one burst: a follower would see only 3
        slot.publish(value)
    renewed = slot.renew()
    renewed.publish(4)
    untap()
    renewed.publish(5)
    assert seen == [1, 2, 3, 4]
