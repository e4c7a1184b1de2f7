"""Accounts, passwords and API tokens (`scopelink.broker.accounts`), on both stores."""

from __future__ import annotations

import asyncio

import pytest
from argon2 import PasswordHasher

from scopelink.broker.accounts import Account, Accounts
from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.store import Store, sha256
from tests.broker.conftest import FAST_HASHER, PASSWORD, FakeClock, refused


async def test_an_account_signs_in_with_its_password_under_any_case(accounts: Accounts) -> None:
    ada = await accounts.create("Ada.L", PASSWORD)
    assert ada.id.startswith("acct_") and ada.name == "Ada.L"
    assert await accounts.login("ada.l", PASSWORD) == ada
    assert await accounts.get(ada.id) == ada


async def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(
    accounts: Accounts, ada: Account
) -> None:
    wrong = await refused(RefusalKind.UNAUTHORIZED, accounts.login("ada", "not the password"))
    unknown = await refused(RefusalKind.UNAUTHORIZED, accounts.login("nobody", PASSWORD))
    odd = await refused(RefusalKind.UNAUTHORIZED, accounts.login("no spaces allowed", PASSWORD))
    assert wrong == unknown == odd == "wrong name or password"


class CountingHasher(PasswordHasher):
    verifies = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        CountingHasher.verifies += 1
        return super().verify(hash, password)


async def test_an_unknown_name_costs_a_password_check_like_a_known_one(store: Store) -> None:
    accounts = Accounts(store, hasher=CountingHasher(time_cost=1, memory_cost=1024, parallelism=1))
    await accounts.create("ada", PASSWORD)
    before = CountingHasher.verifies
    for name in ("ada", "nobody", "x"):
        with pytest.raises(BrokerRefusal):
            await accounts.login(name, "not the password")
    assert CountingHasher.verifies - before == 3


async def test_a_name_is_taken_whatever_its_case(accounts: Accounts, ada: Account) -> None:
    assert await refused(RefusalKind.CONFLICT, accounts.create("ADA", PASSWORD)) == (
        "the name 'ADA' is taken"
    )


async def test_two_sign_ups_with_one_name_at_once_make_one_account(accounts: Accounts) -> None:
    results = await asyncio.gather(
        accounts.create("grace", PASSWORD),
        accounts.create("Grace", PASSWORD),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Account) for r in results) == 1
    assert sum(isinstance(r, BrokerRefusal) and r.kind is RefusalKind.CONFLICT for r in results)


@pytest.mark.parametrize(
    ("name", "password", "says"),
    [
        ("ab", PASSWORD, "3 to 64"),
        ("a" * 65, PASSWORD, "3 to 64"),
        ("ada lovelace", PASSWORD, "no spaces"),
        ("adä", PASSWORD, "3 to 64"),
        ("ada", "short", "at least 10"),
        ("ada", "x" * 1025, "at most 1024"),
    ],
)
async def test_a_name_or_password_outside_the_rules_is_refused(
    accounts: Accounts, name: str, password: str, says: str
) -> None:
    assert says in await refused(RefusalKind.INVALID, accounts.create(name, password))


async def test_the_password_is_stored_as_an_argon2id_hash(accounts: Accounts, store: Store) -> None:
    await accounts.create("ada", PASSWORD)
    row = await store.fetch_one("SELECT password_hash FROM accounts")
    assert row is not None and row[0].startswith("$argon2id$") and PASSWORD not in row[0]


async def test_a_hash_with_old_parameters_is_renewed_at_sign_in(store: Store) -> None:
    await Accounts(store, hasher=FAST_HASHER).create("ada", PASSWORD)
    stronger = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    ada = await Accounts(store, hasher=stronger).login("ada", PASSWORD)
    row = await store.fetch_one("SELECT password_hash FROM accounts")
    assert row is not None and "m=2048,t=2" in row[0]
    assert await Accounts(store, hasher=stronger).login("ada", PASSWORD) == ada


async def test_an_api_token_is_shown_once_and_only_its_digest_is_kept(
    accounts: Accounts, ada: Account, store: Store
) -> None:
    issued = await accounts.issue_token(ada.id, "  telescope laptop ")
    assert issued.token.startswith("slk_") and len(issued.token) == 4 + 43
    assert issued.token not in repr(issued) and issued.label == "telescope laptop"
    rows = await store.fetch_all("SELECT digest FROM api_tokens")
    assert rows == [(sha256(issued.token),)]
    assert issued.id == sha256(issued.token)[:16]


async def test_an_api_token_names_its_account_until_revoked(
    accounts: Accounts, ada: Account, bob: Account
) -> None:
    issued = await accounts.issue_token(ada.id, "cli")
    assert await accounts.account_for_token(issued.token) == ada
    assert [t.id for t in await accounts.tokens(ada.id)] == [issued.id]
    await refused(RefusalKind.NOT_FOUND, accounts.revoke_token(bob.id, issued.id))  # not Bob's
    await accounts.revoke_token(ada.id, issued.id)
    assert await accounts.tokens(ada.id) == []
    assert "revoked" in await refused(
        RefusalKind.UNAUTHORIZED, accounts.account_for_token(issued.token)
    )


async def test_an_expired_api_token_is_refused(
    accounts: Accounts, ada: Account, clock: FakeClock
) -> None:
    issued = await accounts.issue_token(ada.id, "for an hour", ttl_s=3600)
    assert issued.expires == clock.now + 3600
    clock.advance(3599)
    assert await accounts.account_for_token(issued.token) == ada
    clock.advance(1)
    await refused(RefusalKind.EXPIRED, accounts.account_for_token(issued.token))


async def test_a_token_records_when_it_was_last_used_at_most_once_a_minute(
    accounts: Accounts, ada: Account, clock: FakeClock
) -> None:
    issued = await accounts.issue_token(ada.id, "cli")
    assert (await accounts.tokens(ada.id))[0].last_used is None
    first = clock.now
    await accounts.account_for_token(issued.token)
    clock.advance(30)
    await accounts.account_for_token(issued.token)
    assert (await accounts.tokens(ada.id))[0].last_used == first
    clock.advance(31)
    await accounts.account_for_token(issued.token)
    assert (await accounts.tokens(ada.id))[0].last_used == clock.now


async def test_tokens_that_are_not_ours_or_badly_asked_for_are_refused(
    accounts: Accounts, ada: Account
) -> None:
    await refused(RefusalKind.UNAUTHORIZED, accounts.account_for_token("ghp_something"))
    await refused(RefusalKind.UNAUTHORIZED, accounts.account_for_token("slk_made-up"))
    await refused(RefusalKind.INVALID, accounts.issue_token(ada.id, "   "))
    await refused(RefusalKind.INVALID, accounts.issue_token(ada.id, "cli", ttl_s=0))
    await refused(RefusalKind.NOT_FOUND, accounts.issue_token("acct_nobody", "cli"))
