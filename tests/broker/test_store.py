"""The broker's database, on SQLite and PostgreSQL alike (`scopelink.broker.store`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from scopelink.broker.migrations import MIGRATIONS
from scopelink.broker.postgres_store import PostgresStore, psycopg_sql
from scopelink.broker.sqlite_store import SqliteStore
from scopelink.broker.store import Store, StoreConflict, StoreError, open_store, sha256
from tests.broker.postgres_server import PostgresServer

INSERT_ACCOUNT = "INSERT INTO accounts (id, name, password_hash, created) VALUES (?, ?, 'h', 0)"


async def test_migrating_again_changes_nothing_and_the_version_is_recorded(store: Store) -> None:
    assert await store.migrate() == len(MIGRATIONS)
    assert await store.migrate() == len(MIGRATIONS)
    versions = await store.fetch_all("SELECT version FROM schema_version ORDER BY version")
    assert versions == [(v,) for v in range(1, len(MIGRATIONS) + 1)]


async def test_two_brokers_migrating_one_database_at_once_both_succeed(
    new_store: Callable[[], Store],
) -> None:
    async with new_store() as first, new_store() as second:
        latest = len(MIGRATIONS)
        assert await asyncio.gather(first.migrate(), second.migrate()) == [latest, latest]
        await first.execute(INSERT_ACCOUNT, ("acct_1", "ada"))
        assert await second.fetch_one("SELECT name FROM accounts") == ("ada",)


async def test_a_database_newer_than_this_scopelink_is_refused(store: Store) -> None:
    await store.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError, match="newer than this scopelink"):
        await store.migrate()


async def test_a_transaction_that_raises_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.execute(INSERT_ACCOUNT, ("acct_1", "ada"))
            raise RuntimeError("changed my mind")
    assert await store.fetch_all("SELECT id FROM accounts") == []
    async with store.transaction() as tx:
        assert await tx.execute(INSERT_ACCOUNT, ("acct_1", "ada")) == 1
    assert await store.fetch_all("SELECT id FROM accounts") == [("acct_1",)]


async def test_a_broken_constraint_is_a_conflict_and_the_store_carries_on(store: Store) -> None:
    await store.execute(INSERT_ACCOUNT, ("acct_1", "ada"))
    with pytest.raises(StoreConflict):
        async with store.transaction() as tx:
            await tx.execute(INSERT_ACCOUNT, ("acct_2", "bob"))
            await tx.execute(INSERT_ACCOUNT, ("acct_3", "ADA"))  # names ignore case
    assert await store.fetch_all("SELECT id FROM accounts ORDER BY id") == [("acct_1",)]
    with pytest.raises(StoreConflict):  # foreign keys are on
        await store.execute(
            "INSERT INTO members (telescope_id, account_id, role, since) VALUES (?, ?, ?, 0)",
            ("tel_nowhere", "acct_1", "viewer"),
        )
    with pytest.raises(StoreConflict):  # and so are checks
        await store.execute(
            "INSERT INTO telescopes (id, name, paired_by, proxy_key, created) "
            "VALUES ('tel_1', 'T', 'acct_1', 'k', 0)"
        )
        await store.execute(
            "INSERT INTO members (telescope_id, account_id, role, since) VALUES (?, ?, ?, 0)",
            ("tel_1", "acct_1", "admiral"),
        )
    assert await store.execute(INSERT_ACCOUNT + " ON CONFLICT DO NOTHING", ("acct_9", "Ada")) == 0


async def test_concurrent_transactions_all_land(store: Store) -> None:
    async def add(n: int) -> None:
        async with store.transaction() as tx:
            await tx.execute(INSERT_ACCOUNT, (f"acct_{n}", f"user{n}"))
            await asyncio.sleep(0)
            assert await tx.fetch_one("SELECT name FROM accounts WHERE id = ?", (f"acct_{n}",))

    await asyncio.gather(*(add(n) for n in range(20)))
    assert await store.fetch_one("SELECT count(*) FROM accounts") == (20,)


async def test_a_literal_percent_sign_means_the_same_on_both(store: Store) -> None:
    await store.execute(INSERT_ACCOUNT, ("acct_1", "100%"))
    assert await store.fetch_one("SELECT id FROM accounts WHERE name LIKE '100%'") == ("acct_1",)


def test_placeholders_are_translated_for_psycopg() -> None:
    assert psycopg_sql("SELECT a FROM t WHERE b = ? AND c LIKE 'x%'") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE 'x%%'"
    )


def test_secrets_are_stored_as_their_sha256() -> None:
    assert sha256("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


async def test_a_sqlite_store_is_a_wal_file_with_foreign_keys(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "deep" / "broker.db") as store:
        assert await store.fetch_one("PRAGMA journal_mode") == ("wal",)
        assert await store.fetch_one("PRAGMA foreign_keys") == (1,)
    assert (tmp_path / "deep" / "broker.db").exists()


async def test_open_store_understands_sqlite_and_postgresql_urls(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    sqlite = await open_store(f"sqlite:///{tmp_path}/broker.db")
    assert isinstance(sqlite, SqliteStore) and sqlite.path == f"{tmp_path}/broker.db"
    await sqlite.close()
    memory = await open_store("sqlite:///:memory:")
    assert await memory.migrate() == len(MIGRATIONS)
    await memory.close()
    postgres = await open_store(postgres_server.create_database())
    assert isinstance(postgres, PostgresStore)
    assert await postgres.migrate() == len(MIGRATIONS)
    await postgres.close()
    with pytest.raises(ValueError, match="'mysql'") as refused:
        await open_store("mysql://root:hunter2@db/broker")
    assert "hunter2" not in str(refused.value)


async def test_an_unreachable_postgres_fails_at_open(postgres_server: PostgresServer) -> None:
    store = PostgresStore(postgres_server.dsn("no_such_database"))
    with pytest.raises(StoreError, match="cannot connect"):
        await store.open()


async def test_more_transactions_than_connections_take_turns(
    postgres_server: PostgresServer,
) -> None:
    async with PostgresStore(postgres_server.create_database(), max_connections=2) as store:
        await store.migrate()

        async def slow(n: int) -> None:
            async with store.transaction() as tx:
                await tx.execute(INSERT_ACCOUNT, (f"acct_{n}", f"user{n}"))
                await tx.fetch_one("SELECT pg_sleep(0.02)")

        await asyncio.gather(*(slow(n) for n in range(8)))
        assert await store.fetch_one("SELECT count(*) FROM accounts") == (8,)
        assert len(store._idle) <= 2
