"""Which broker instance holds each telescope's proxy link, and who connected where: in the
store, so that every instance sees it (`proxy_presence`, `connections`).

A link is present while its instance keeps `seen` fresh (at every heartbeat); a row older than
`stale_after_s` is an instance that died without saying so, and its telescope is offline.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from scopelink.broker.store import Store


@dataclass(frozen=True, slots=True)
class Presence:
    telescope_id: str
    instance: str
    linked_at: float
    seen: float
    max_peers: int
    lan_url: str | None = None


@dataclass(frozen=True, slots=True)
class Connection:
    """One browser's signaling conversation with a telescope, as its owner may list it."""

    id: str
    telescope_id: str
    account_id: str
    account_name: str
    instance: str
    opened: float
    ended: float | None
    outcome: str | None


class PresenceBook:
    """Presence rows and connection records over a `Store`."""

    def __init__(
        self, store: Store, stale_after_s: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self.stale_after_s = stale_after_s
        self._clock = clock

    async def linked(
        self, telescope_id: str, instance: str, max_peers: int, lan_url: str | None = None
    ) -> None:
        """This instance now holds the telescope's link (a newer link replaces any other)."""
        now = self._clock()
        async with self._store.transaction() as tx:
            await tx.execute("DELETE FROM proxy_presence WHERE telescope_id = ?", (telescope_id,))
            await tx.execute(
                "INSERT INTO proxy_presence "
                "(telescope_id, instance, linked_at, seen, max_peers, lan_url) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (telescope_id, instance, now, now, max_peers, lan_url),
            )

    async def seen(self, telescope_id: str, instance: str) -> bool:
        """Heartbeat; False when the link has moved to another instance since (close it)."""
        changed = await self._store.execute(
            "UPDATE proxy_presence SET seen = ? WHERE telescope_id = ? AND instance = ?",
            (self._clock(), telescope_id, instance),
        )
        return changed > 0

    async def unlinked(self, telescope_id: str, instance: str) -> None:
        await self._store.execute(
            "DELETE FROM proxy_presence WHERE telescope_id = ? AND instance = ?",
            (telescope_id, instance),
        )

    async def of(self, telescope_id: str) -> Presence | None:
        """Where the telescope's link is, if it is fresh."""
        row = await self._store.fetch_one(
            "SELECT telescope_id, instance, linked_at, seen, max_peers, lan_url "
            "FROM proxy_presence WHERE telescope_id = ? AND seen > ?",
            (telescope_id, self._clock() - self.stale_after_s),
        )
        return None if row is None else Presence(*row)

    async def online(self, telescope_ids: list[str]) -> dict[str, str | None]:
        """Which of these telescopes have a fresh link, each with its proxy's LAN page."""
        if not telescope_ids:
            return {}
        marks = ", ".join("?" for _ in telescope_ids)
        rows = await self._store.fetch_all(
            "SELECT telescope_id, lan_url FROM proxy_presence "
            f"WHERE seen > ? AND telescope_id IN ({marks})",
            (self._clock() - self.stale_after_s, *telescope_ids),
        )
        return {row[0]: row[1] for row in rows}

    async def forget_instance(self, instance: str) -> None:
        """An instance starting: no link of its earlier life is held any more."""
        await self._store.execute("DELETE FROM proxy_presence WHERE instance = ?", (instance,))

    # -- connections -------------------------------------------------------------------------

    async def opened(self, conv: str, telescope_id: str, account_id: str, instance: str) -> None:
        await self._store.execute(
            "INSERT INTO connections (id, telescope_id, account_id, instance, opened) "
            "VALUES (?, ?, ?, ?, ?)",
            (conv, telescope_id, account_id, instance, self._clock()),
        )

    async def ended(self, conv: str, outcome: str) -> None:
        await self._store.execute(
            "UPDATE connections SET ended = ?, outcome = ? WHERE id = ? AND ended IS NULL",
            (self._clock(), outcome[:80], conv),
        )

    async def connections(self, telescope_id: str, limit: int = 50) -> list[Connection]:
        """The telescope's latest conversations, newest first."""
        rows = await self._store.fetch_all(
            "SELECT c.id, c.telescope_id, c.account_id, a.name, c.instance, c.opened, c.ended, "
            "c.outcome FROM connections c JOIN accounts a ON a.id = c.account_id "
            "WHERE c.telescope_id = ? ORDER BY c.opened DESC LIMIT ?",
            (telescope_id, limit),
        )
        return [Connection(*row) for row in rows]
