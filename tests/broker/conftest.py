"""Broker fixtures: every store-backed test runs twice, on SQLite in a temporary directory and on
a real PostgreSQL server (one per session, a fresh database per test), through the same services.

`postgres_server` is the session's server (see `postgres_server.py`); another module can ask for
it and put two brokers on one database with `postgres_server.create_database()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from scopelink.broker.accounts import Account, Accounts
from scopelink.broker.invitations import Invitations
from scopelink.broker.pairing import Pairings
from scopelink.broker.postgres_store import PostgresStore
from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.sqlite_store import SqliteStore
from scopelink.broker.store import Store
from scopelink.broker.telescopes import Telescope, Telescopes
from scopelink.grants import generate_private_key, public_key_pem
from tests.broker.postgres_server import PostgresServer

#: The store backends each store test runs on.
BACKENDS = ("sqlite", "postgres")
START = 1_700_000_000.0
PASSWORD = "correct horse battery"
#: Cheap argon2 parameters: tests hash dozens of passwords (production uses the defaults).
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class FakeClock:
    """A clock the test moves: `clock()` is now, `advance(s)` moves it on."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(params=BACKENDS)
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """Makes unopened stores on one fresh database of the test's backend (two calls: two
    brokers sharing it)."""
    if request.param == "sqlite":
        path = tmp_path / "broker" / "broker.db"
        return lambda: SqliteStore(path)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    dsn = server.create_database()
    return lambda: PostgresStore(dsn)


@pytest.fixture
async def store(new_store: Callable[[], Store]) -> AsyncIterator[Store]:
    """An open, migrated store."""
    async with new_store() as opened:
        await opened.migrate()
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def accounts(store: Store, clock: FakeClock) -> Accounts:
    return Accounts(store, hasher=FAST_HASHER, clock=clock)


@pytest.fixture
def telescopes(store: Store, clock: FakeClock) -> Telescopes:
    return Telescopes(store, clock=clock)


@pytest.fixture
def pairings(store: Store, clock: FakeClock) -> Pairings:
    return Pairings(store, clock=clock)


@pytest.fixture
def invitations(store: Store, telescopes: Telescopes, clock: FakeClock) -> Invitations:
    return Invitations(store, telescopes, clock=clock)


@pytest.fixture
async def ada(accounts: Accounts) -> Account:
    """An account that will own a telescope."""
    return await accounts.create("ada", PASSWORD)


@pytest.fixture
async def bob(accounts: Accounts) -> Account:
    """Another account."""
    return await accounts.create("bob", PASSWORD)


async def refused(kind: RefusalKind, pending: Awaitable[object]) -> str:
    """The detail of the refusal `pending` ends in, which must be of `kind`."""
    with pytest.raises(BrokerRefusal) as refusal:
        await pending
    assert refusal.value.kind is kind, refusal.value
    return refusal.value.detail


def proxy_key() -> str:
    """A new proxy's public key."""
    return public_key_pem(generate_private_key())


async def pair(
    pairings: Pairings, owner: Account, name: str = "Backyard", key: str = ""
) -> Telescope:
    """A telescope paired by `owner` through the whole device-code dance."""
    start = await pairings.start(key or proxy_key())
    return await pairings.claim(start.user_code, owner.id, name)


@pytest.fixture
async def telescope(pairings: Pairings, ada: Account) -> Telescope:
    """A telescope Ada owns."""
    return await pair(pairings, ada)


async def join(
    invitations: Invitations, owner: Account, telescope: Telescope, account: Account, role: str
) -> None:
    """`account` made `role` on `telescope` by an invitation from `owner`."""
    invitation = await invitations.invite(owner.id, telescope.id, role)
    await invitations.accept(invitation.code, account.id)


@pytest.fixture
async def cyd(accounts: Accounts) -> Account:
    """A third account."""
    return await accounts.create("cyd", PASSWORD)
