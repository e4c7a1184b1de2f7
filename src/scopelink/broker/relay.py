"""Signaling between broker instances: when a browser reaches one instance and its telescope's
proxy holds its link on another, their conversation's messages cross through an existing
engine, never one of ours.

- `LocalRelay`: one instance (the embedded default, with SQLite): nothing crosses.
- `PostgresRelay`: PostgreSQL's LISTEN/NOTIFY on the broker's own database. Chosen over Redis
  pub/sub because a broker that runs on several machines already needs PostgreSQL for its
  store: the relay adds no server to install, secure and watch. Each instance listens on its
  own channel; a message is delivered at most once, to instances listening at that moment,
  which is what signaling needs (a lost offer is retried by the browser, as on any network).
  A NOTIFY payload is at most 8000 bytes: a larger message (an SDP offer with many
  candidates) is written to `relay_spill` and its row id is sent instead; the receiver takes
  the row and deletes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

#: One relayed message: a dict of JSON values (`hub.py` says what each kind carries).
Frame = dict[str, Any]
Deliver = Callable[[Frame], Awaitable[None]]
#: Larger payloads go through `relay_spill` (NOTIFY's own limit is 8000 bytes).
MAX_NOTIFY_BYTES = 7000


class UnknownInstance(Exception):
    """A frame for an instance this relay cannot reach."""


class Relay(ABC):
    """Carries frames to broker instances by name; `deliver` gets this instance's."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self._deliver: Deliver | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def stop(self) -> None:
        self._deliver = None

    @abstractmethod
    async def publish(self, instance: str, frame: Frame) -> None:
        """Send `frame` to `instance` (this one included)."""

    async def _here(self, frame: Frame) -> None:
        if self._deliver is not None:
            await self._deliver(frame)


class LocalRelay(Relay):
    """A single broker instance."""

    async def publish(self, instance: str, frame: Frame) -> None:
        if instance != self.instance:
            raise UnknownInstance(f"no broker instance {instance!r} (this broker runs alone)")
        await self._here(frame)


def channel_name(instance: str) -> str:
    """The LISTEN channel of an instance (an identifier: quoted where used)."""
    return f"scopelink_broker_{instance}"


class PostgresRelay(Relay):
    """LISTEN/NOTIFY on the broker's PostgreSQL database."""

    def __init__(self, instance: str, dsn: str) -> None:
        super().__init__(instance)
        self.dsn = dsn
        self._listener: Any = None
        self._sender: Any = None
        self._send_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def start(self, deliver: Deliver) -> None:
        import psycopg  # only a broker on PostgreSQL needs it

        await super().start(deliver)
        self._listener = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        self._sender = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        await self._sender.execute(
            "CREATE TABLE IF NOT EXISTS relay_spill ("
            "id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL, "
            "created TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        await self._listener.execute(f'LISTEN "{channel_name(self.instance)}"')
        self._task = asyncio.create_task(self._listen(), name="relay-listen")

    async def stop(self) -> None:
        await super().stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for connection in (self._listener, self._sender):
            if connection is not None:
                with contextlib.suppress(Exception):
                    await connection.close()

    async def publish(self, instance: str, frame: Frame) -> None:
        payload = json.dumps(frame, separators=(",", ":"))
        async with self._send_lock:
            if len(payload.encode()) > MAX_NOTIFY_BYTES:
                cursor = await self._sender.execute(
                    "INSERT INTO relay_spill (payload) VALUES (%s) RETURNING id", (payload,)
                )
                row = await cursor.fetchone()
                payload = json.dumps({"spill": row[0]})
            await self._sender.execute(
                "SELECT pg_notify(%s, %s)", (channel_name(instance), payload)
            )

    async def _listen(self) -> None:
        async for notice in self._listener.notifies():
            try:
                frame = json.loads(notice.payload)
                if set(frame) == {"spill"}:
                    frame = await self._unspill(int(frame["spill"]))
                    if frame is None:
                        continue
                await self._here(frame)
            except Exception:  # one bad frame must not stop the instance's relay
                log.exception("relay: a frame could not be delivered")

    async def _unspill(self, spill_id: int) -> Frame | None:
        async with self._send_lock:
            cursor = await self._sender.execute(
                "DELETE FROM relay_spill WHERE id = %s RETURNING payload", (spill_id,)
            )
            row = await cursor.fetchone()
        if row is None:
            log.warning("relay: spilled frame %d is gone", spill_id)
            return None
        frame: Frame = json.loads(row[0])
        return frame
