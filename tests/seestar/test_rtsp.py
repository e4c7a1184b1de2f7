"""The RTSP source against real sockets: the simulator's RTSP camera, and servers that misbehave."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator

import pytest

from scopelink.seestar.link import ConnectionState
from scopelink.seestar.rtsp import RtspSource, StreamFacts, Transport, passthrough_ok
from scopelink.settings import Backoff

FAST_BACKOFF = Backoff(initial_s=0.05, maximum_s=0.3)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def workers(source: RtspSource) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{source.name}-")]


async def until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout:g} s")
        await asyncio.sleep(0.02)


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never answers: a telescope that hangs."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()


# -- passthrough_ok ------------------------------------------------------------------------------


def facts(**kwargs: object) -> StreamFacts:
    base: dict[str, object] = dict(
        codec="h264", transport=Transport.TCP, profile="Constrained Baseline", profile_idc=66,
        constraints=0xC0, level_idc=40, level="4.0", width=1920, height=1080, frame_rate=30.0,
        slice_groups=1, redundant_pictures=False, cabac=False,
    )  # fmt: skip
    return StreamFacts(**{**base, **kwargs})  # type: ignore[arg-type]


def test_constrained_baseline_without_b_frames_goes_to_browsers_unchanged() -> None:
    assert passthrough_ok(facts()) is None
    assert passthrough_ok(facts(profile="Baseline", constraints=0x00)) is None
    assert facts().profile_level_id == "42c028"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"codec": "hevc"}, "not H.264"),
        ({"profile": None}, "profile is unknown"),
        ({"profile": "Main", "profile_idc": 77}, "Main is not (Constrained) Baseline"),
        ({"profile": "High", "profile_idc": 100}, "High is not"),
        ({"reorders": True}, "B-frames"),
        ({"profile": "Baseline", "slice_groups": 2}, "flexible macroblock ordering"),
        ({"profile": "Baseline", "redundant_pictures": True}, "redundant pictures"),
    ],
)
def test_passthrough_refuses_what_browsers_cannot_decode(
    changes: dict[str, object], reason: str
) -> None:
    refusal = passthrough_ok(facts(**changes))
    assert refusal is not None and reason in refusal


# -- servers that are not there or do not answer ---------------------------------------------------


async def test_a_server_that_is_not_there_is_retried_with_backoff_and_close_is_prompt() -> None:
    states: list[ConnectionState] = []
    source = RtspSource("127.0.0.1", free_port(), backoff=FAST_BACKOFF, name="rtsp-absent")
    source.add_state_listener(states.append)
    source.start()
    await until(lambda: source.stats.failed_attempts >= 3, 5.0)
    assert source.state is ConnectionState.RECONNECTING
    assert source.last_error is not None and "connect failed" in source.last_error
    assert "refused" in source.last_error.lower()
    assert source.stats.units == 0 and source.facts is None
    started = time.monotonic()
    await source.close()
    assert time.monotonic() - started < 0.5
    assert states[0] is ConnectionState.CONNECTING
    assert states[-1] is ConnectionState.CLOSED
    assert ConnectionState.CONNECTED not in states
    with pytest.raises(TimeoutError):
        await source.wait_connected(0.05)


async def test_a_server_that_never_answers_times_out_and_close_does_not_wait_for_it(
    silent_server: int,
) -> None:
    source = RtspSource(
        "127.0.0.1", silent_server, backoff=FAST_BACKOFF, connect_timeout=0.5,
        name="rtsp-silent",
    )  # fmt: skip
    source.start()
    await until(lambda: source.stats.failed_attempts >= 1, 3.0)
    assert source.last_error == "connect failed: no answer within 0.5 s"
    # Close while the next attempt is blocked in FFmpeg: returns at once, the worker soon after.
    await until(lambda: bool(workers(source)), 2.0)
    started = time.monotonic()
    await source.close()
    assert time.monotonic() - started < 0.2
    assert source.state is ConnectionState.CLOSED and source.units.closed
    await until(lambda: not workers(source), 2.0)
    assert source.stats.units == 0
