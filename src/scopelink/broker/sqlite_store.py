"""`SqliteStore`: the broker's database in one SQLite file, for a single broker process.

One connection, used only by one dedicated worker thread (sqlite3 connections belong to the
thread that made them, and a single thread keeps statement order obvious); an asyncio lock
lets one transaction at a time use it. WAL mode lets other processes (a backup, the sqlite3
shell) read while the broker writes; foreign keys are on.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from scopelink.broker.store import Params, Row, Store, StoreConflict, StoreError, Transaction

__all__ = ["SqliteStore"]

T = TypeVar("T")
#: How long a statement waits for another process's write lock before failing (milliseconds).
BUSY_TIMEOUT_MS = 5000


class SqliteStore(Store):
    """The broker's database in the SQLite file `path` (":memory:" for a private one)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scopelink-sqlite")
        self._connection: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._connection is None:
            self._connection = await self._call(self._connect)

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit BEGIN; `transaction()` says BEGIN and COMMIT itself.
        connection = sqlite3.connect(self.path, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA synchronous = NORMAL")  # durable enough with WAL, and faster
        return connection

    async def close(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._call(self._connection.close)
                self._connection = None
        self._worker.shutdown(wait=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._lock:
            if self._connection is None:
                raise StoreError("the store is not open")
            connection = self._connection
            # IMMEDIATE: take the write lock now, so two processes cannot both read then write.
            await self._call(connection.execute, "BEGIN IMMEDIATE")
            try:
                yield _SqliteTransaction(self, connection)
                await self._call(connection.execute, "COMMIT")
            except BaseException:
                await self._call(_rollback, connection)
                raise

    async def _lock_schema(self, tx: Transaction) -> None:
        return None  # BEGIN IMMEDIATE already holds the database's one write lock

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._worker, function, *args)
        except sqlite3.IntegrityError as error:
            raise StoreConflict(str(error)) from error
        except sqlite3.DatabaseError as error:
            raise StoreError(f"SQLite: {error}") from error


class _SqliteTransaction:
    def __init__(self, store: SqliteStore, connection: sqlite3.Connection) -> None:
        self._store = store
        self._connection = connection

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._store._call(_execute, self._connection, sql, tuple(params))

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        return await self._store._call(_fetch_one, self._connection, sql, tuple(params))

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._store._call(_fetch_all, self._connection, sql, tuple(params))


# These run on the worker thread.


def _execute(connection: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> int:
    return connection.execute(sql, params).rowcount


def _fetch_one(connection: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> Row | None:
    row: Row | None = connection.execute(sql, params).fetchone()
    return row


def _fetch_all(connection: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[Row]:
    return list(connection.execute(sql, params).fetchall())


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:  # a failed COMMIT may already have ended it
        connection.execute("ROLLBACK")
