"""`PostgresStore`: the broker's database in PostgreSQL, which several brokers can share.

psycopg 3's asyncio connections, in a small pool of our own (at most `max_connections`, made
when first needed, kept while healthy): concurrent requests do not queue behind one another's
round trips as they would on one locked connection, and a handful of connections is all a
signaling broker needs, so psycopg_pool (another dependency) would add nothing.

The shared SQL's `?` placeholders become psycopg's `%s` (`psycopg_sql`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache

import psycopg
from psycopg.pq import TransactionStatus

from scopelink.broker.store import Params, Row, Store, StoreConflict, StoreError, Transaction

__all__ = ["PostgresStore", "psycopg_sql"]

#: Connections a broker opens at most; more concurrent transactions wait for one.
MAX_CONNECTIONS = 4
#: The advisory lock that keeps two brokers from migrating the schema at once (any constant).
MIGRATION_LOCK = 0x5C09E11


@lru_cache(maxsize=512)
def psycopg_sql(sql: str) -> str:
    """`sql` with psycopg's placeholders: `?` becomes `%s`, a literal `%` becomes `%%`.
    (Shared SQL never has a `?` inside a string literal.)"""
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresStore(Store):
    """The broker's database at `dsn` (a `postgresql://` URL or `key=value` string)."""

    def __init__(self, dsn: str, *, max_connections: int = MAX_CONNECTIONS) -> None:
        self.dsn = dsn
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[psycopg.AsyncConnection] = []
        self._closed = False

    async def open(self) -> None:
        async with self._connection():
            pass

    async def close(self) -> None:
        self._closed = True  # connections in use are closed when they come back
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._connection() as connection:
            try:
                async with connection.transaction():
                    yield _PostgresTransaction(connection)
            except psycopg.Error as error:  # BEGIN or COMMIT (statements wrap their own)
                raise StoreError(f"PostgreSQL: {error}") from error

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        if self._closed:
            raise StoreError("the store is closed")
        async with self._slots:
            if self._idle:
                connection = self._idle.pop()
            else:
                try:
                    connection = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
                except psycopg.Error as error:
                    raise StoreError(f"cannot connect to PostgreSQL: {error}") from error
            try:
                yield connection
            finally:
                await self._give_back(connection)

    async def _give_back(self, connection: psycopg.AsyncConnection) -> None:
        # A connection that broke (server restart) or was left mid-transaction is not reused.
        healthy = (
            not connection.closed
            and not connection.broken
            and connection.info.transaction_status == TransactionStatus.IDLE
        )
        if healthy and not self._closed:
            self._idle.append(connection)
        else:
            await connection.close()

    async def _lock_schema(self, tx: Transaction) -> None:
        await tx.fetch_one("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))


class _PostgresTransaction:
    def __init__(self, connection: psycopg.AsyncConnection) -> None:
        self._connection = connection

    async def execute(self, sql: str, params: Params = ()) -> int:
        cursor = await self._run(sql, params)
        return cursor.rowcount

    async def fetch_one(self, sql: str, params: Params = ()) -> Row | None:
        cursor = await self._run(sql, params)
        return await cursor.fetchone()

    async def fetch_all(self, sql: str, params: Params = ()) -> list[Row]:
        cursor = await self._run(sql, params)
        return await cursor.fetchall()

    async def _run(self, sql: str, params: Params) -> psycopg.AsyncCursor[Row]:
        try:
            return await self._connection.execute(psycopg_sql(sql), tuple(params))
        except psycopg.IntegrityError as error:
            raise StoreConflict(str(error)) from error
        except psycopg.Error as error:
            raise StoreError(f"PostgreSQL: {error}") from error
