"""The client's side of the signaling socket (docs/signaling.md), for tests, the test programs
run in network namespaces and the benchmarks: wait for the next message of one type."""

from __future__ import annotations

import asyncio
import json
from typing import Any


class SignalingRefused(AssertionError):
    """An `error` message came instead of the one waited for; its problem is the message."""


async def next_message(ws: Any, kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The next message of type `kind` on a signaling socket; others before it are skipped, and
    an `error` (unless that is what is waited for) raises `SignalingRefused` with its problem."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == kind:
                return message  # type: ignore[no-any-return]
            if message["type"] == "error":
                raise SignalingRefused(f"error instead of {kind}: {message['problem']}")
