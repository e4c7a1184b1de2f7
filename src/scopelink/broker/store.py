"""`Store`: the broker's database behind one async interface, with the same SQL for SQLite
(`SqliteStore`, one file, one process) and PostgreSQL (`PostgresStore`, several brokers).

Statements are written once with `?` placeholders; the PostgreSQL backend translates them.
Every change runs in `transaction()`, which commits when its block ends and rolls back when it
raises. A unique or foreign-key violation surfaces as `StoreConflict` and ends the transaction,
so catch it outside the block. Transactions do not nest.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol

from scopelink.broker.migrations import MIGRATIONS

__all__ = ["Row", "Store", "StoreConflict", "StoreError", "Transaction", "open_store", "sha256"]

Row = tuple[Any, ...]
Params = Sequence[object]


class StoreError(Exception):
    """The database cannot do what was asked."""


class StoreConflict(StoreError):
    """A statement broke a unique, foreign-key or check constraint."""


class Transaction(Protocol):
    """Statements inside one transaction."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run `sql`; the number of rows it changed."""
        ...

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None: ...

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]: ...


class Store(ABC):
    """The broker's database."""

    @abstractmethod
    async def open(self) -> None:
        """Connect (a wrong path or DSN fails here, not at the first request)."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction: committed when the block ends, rolled back if it raises."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One statement in a transaction of its own."""
        async with self.transaction() as tx:
            return await tx.execute(sql, params)

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        async with self.transaction() as tx:
            return await tx.fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        async with self.transaction() as tx:
            return await tx.fetch_all(sql, params)

    async def migrate(self) -> int:
        """Bring the schema to the newest version (a no-op when it is); that version."""
        async with self.transaction() as tx:
            await self._lock_schema(tx)
            await tx.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = await tx.fetch_one("SELECT max(version) FROM schema_version")
            current = int(row[0]) if row and row[0] is not None else 0
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"the database is at schema version {current}, newer than this scopelink "
                    f"knows ({len(MIGRATIONS)}); upgrade scopelink"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[version - 1]:
                    await tx.execute(statement)
                await tx.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        return len(MIGRATIONS)

    @abstractmethod
    async def _lock_schema(self, tx: Transaction) -> None:
        """Keep other brokers out of `migrate` until this transaction `tx` ends."""

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


def sha256(secret: str) -> str:
    """How a secret (token, code) is stored: its SHA-256, hex. Enough for random secrets of
    128 bits or more, which no one can guess from the digest (passwords use argon2)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


async def open_store(url: str) -> Store:
    """The store at `url`, connected: `sqlite:///relative.db`, `sqlite:////abs/path.db`,
    `sqlite:///:memory:`, or `postgresql://user@host/db` (`postgres://` too)."""
    store: Store
    # Imported here: a broker on SQLite needs no psycopg installed.
    if url.startswith("sqlite:///"):
        from scopelink.broker.sqlite_store import SqliteStore

        store = SqliteStore(url.removeprefix("sqlite:///"))
    elif url.startswith(("postgresql://", "postgres://")):
        from scopelink.broker.postgres_store import PostgresStore

        store = PostgresStore(url)
    else:
        scheme = url.partition(":")[0]  # not the whole URL: it may hold a password
        raise ValueError(
            f"unknown store URL scheme {scheme!r}: use sqlite:///path/to/broker.db "
            "or postgresql://user@host/database"
        )
    await store.open()
    return store
