"""Pairing a proxy with a telescope by device code (`scopelink.broker.pairing`), on both stores."""

from __future__ import annotations

import asyncio

import pytest

from scopelink.broker.accounts import Account
from scopelink.broker.pairing import (
    ACCOUNT_WINDOW_S,
    ACCOUNT_WRONG_TRIES,
    KEEP_FINISHED_S,
    PAIRING_TTL_S,
    USER_CODE_ALPHABET,
    Pairings,
    PairingState,
    PairingStatus,
)
from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.store import Store, sha256
from scopelink.broker.telescopes import Telescope, Telescopes
from scopelink.grants import TelescopeRole
from tests.broker.conftest import FakeClock, pair, proxy_key, refused


def mistyped(user_code: str) -> str:
    """The code with its last letter wrong (its first half still finds the pairing)."""
    last = user_code[-1]
    return user_code[:-1] + next(c for c in USER_CODE_ALPHABET if c != last)


async def test_a_proxy_pairs_when_its_owner_types_the_code(
    pairings: Pairings, telescopes: Telescopes, ada: Account
) -> None:
    key = proxy_key()
    start = await pairings.start(key)
    assert (start.expires_in, start.interval) == (PAIRING_TTL_S, 2)
    first, dash, second = start.user_code.partition("-")
    assert dash and len(first) == len(second) == 4
    assert set(first + second) <= set(USER_CODE_ALPHABET)
    assert await pairings.poll(start.device_code) == PairingStatus(PairingState.PENDING)

    telescope = await pairings.claim(start.user_code, ada.id, "  Backyard Seestar ")
    assert telescope.id.startswith("tel_") and telescope.name == "Backyard Seestar"
    assert await pairings.poll(start.device_code) == PairingStatus(
        PairingState.PAIRED, telescope.id
    )
    assert await telescopes.role_of(ada.id, telescope.id) is TelescopeRole.OWNER
    assert await telescopes.telescope_for_proxy(key) == telescope


async def test_the_code_may_be_typed_in_lower_case_with_spaces_and_no_dash(
    pairings: Pairings, ada: Account
) -> None:
    start = await pairings.start(proxy_key())
    typed = " " + start.user_code.replace("-", " ").lower() + " "
    assert (await pairings.claim(typed, ada.id, "Backyard")).name == "Backyard"


async def test_a_code_typed_wrong_five_times_locks(
    pairings: Pairings, ada: Account, bob: Account
) -> None:
    start = await pairings.start(proxy_key())
    for guesser in (ada, bob, ada, bob, ada):  # counted on the code, whoever types it
        await refused(
            RefusalKind.NOT_FOUND, pairings.claim(mistyped(start.user_code), guesser.id, "T")
        )
    detail = await refused(RefusalKind.RATE_LIMITED, pairings.claim(start.user_code, ada.id, "T"))
    assert "locked after 5 wrong tries" in detail and "start pairing again" in detail
    assert (await pairings.poll(start.device_code)).state is PairingState.LOCKED
    # A new pairing is a new code.
    again = await pairings.start(proxy_key())
    await pairings.claim(again.user_code, ada.id, "T")


async def test_a_wrong_code_does_not_say_which_half_was_wrong(
    pairings: Pairings, ada: Account
) -> None:
    start = await pairings.start(proxy_key())
    other_half = "".join(next(c for c in USER_CODE_ALPHABET if c != start.user_code[0]) * 4)
    nowhere = await refused(
        RefusalKind.NOT_FOUND, pairings.claim(other_half + start.user_code[4:], ada.id, "T")
    )
    near = await refused(
        RefusalKind.NOT_FOUND, pairings.claim(mistyped(start.user_code), ada.id, "T")
    )
    assert nowhere == near


async def test_an_account_guessing_codes_is_held_off_for_a_while(
    pairings: Pairings, ada: Account, bob: Account, clock: FakeClock
) -> None:
    start = await pairings.start(proxy_key())
    guesses = [c * 8 for c in USER_CODE_ALPHABET if c != start.user_code[0]]
    for guess in guesses[:ACCOUNT_WRONG_TRIES]:
        await refused(RefusalKind.NOT_FOUND, pairings.claim(guess, bob.id, "Mine now"))
    detail = await refused(RefusalKind.RATE_LIMITED, pairings.claim(start.user_code, bob.id, "T"))
    assert detail == "too many wrong pairing codes; try again in 15 min"
    # Others are not held off, and the guesser is again once the window has passed.
    await pairings.claim(start.user_code, ada.id, "Backyard")
    clock.advance(ACCOUNT_WINDOW_S)
    later = await pairings.start(proxy_key())
    await pairings.claim(later.user_code, bob.id, "Balcony")


async def test_a_code_not_typed_in_time_expires(
    pairings: Pairings, ada: Account, clock: FakeClock
) -> None:
    start = await pairings.start(proxy_key())
    clock.advance(PAIRING_TTL_S)
    assert "expired" in await refused(
        RefusalKind.EXPIRED, pairings.claim(start.user_code, ada.id, "T")
    )
    assert (await pairings.poll(start.device_code)).state is PairingState.EXPIRED


async def test_a_code_pairs_once(pairings: Pairings, ada: Account, bob: Account) -> None:
    start = await pairings.start(proxy_key())
    await pairings.claim(start.user_code, ada.id, "Backyard")
    await refused(RefusalKind.CONFLICT, pairings.claim(start.user_code, bob.id, "Mine"))


async def test_two_people_typing_one_code_at_once_make_one_telescope(
    pairings: Pairings, ada: Account, bob: Account, store: Store
) -> None:
    start = await pairings.start(proxy_key())
    results = await asyncio.gather(
        pairings.claim(start.user_code, ada.id, "A"),
        pairings.claim(start.user_code, bob.id, "B"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Telescope) for r in results) == 1
    assert sum(isinstance(r, BrokerRefusal) for r in results) == 1
    assert await store.fetch_one("SELECT count(*) FROM telescopes") == (1,)


async def test_a_reinstalled_proxy_with_its_old_key_keeps_its_telescope(
    pairings: Pairings, telescopes: Telescopes, ada: Account
) -> None:
    key = proxy_key()
    first = await pair(pairings, ada, "Backyard", key)
    again = await pair(pairings, ada, "Back garden", key)
    assert again.id == first.id and again.name == "Back garden"
    assert [t.id for t, _ in await telescopes.telescopes_of(ada.id)] == [first.id]


async def test_a_proxy_with_a_new_key_pairs_as_a_new_telescope(
    pairings: Pairings, telescopes: Telescopes, ada: Account
) -> None:
    first = await pair(pairings, ada, "Backyard")
    second = await pair(pairings, ada, "Backyard")
    assert first.id != second.id
    assert len(await telescopes.telescopes_of(ada.id)) == 2


async def test_nobody_else_can_take_over_a_paired_proxy(
    pairings: Pairings, telescopes: Telescopes, ada: Account, bob: Account
) -> None:
    key = proxy_key()
    telescope = await pair(pairings, ada, "Backyard", key)
    start = await pairings.start(key)
    assert "do not own" in await refused(
        RefusalKind.FORBIDDEN, pairings.claim(start.user_code, bob.id, "Mine")
    )
    assert await telescopes.role_of(bob.id, telescope.id) is None
    assert (await pairings.poll(start.device_code)).state is PairingState.PENDING


async def test_only_an_ed25519_key_can_pair(pairings: Pairings) -> None:
    assert "not a PEM public key" in await refused(RefusalKind.INVALID, pairings.start("hello"))


@pytest.mark.parametrize("code", ["WDJB-MJH", "WDJB-MJHTX", "AEIO-U123", ""])
async def test_a_code_of_the_wrong_shape_is_refused_without_counting(
    pairings: Pairings, ada: Account, code: str
) -> None:
    assert "like WDJB-MJHT" in await refused(RefusalKind.INVALID, pairings.claim(code, ada.id, "T"))


async def test_a_telescope_needs_a_name(pairings: Pairings, ada: Account) -> None:
    start = await pairings.start(proxy_key())
    await refused(RefusalKind.INVALID, pairings.claim(start.user_code, ada.id, "   "))
    await refused(RefusalKind.INVALID, pairings.claim(start.user_code, ada.id, "x" * 65))


async def test_the_device_code_is_kept_only_as_its_digest(pairings: Pairings, store: Store) -> None:
    start = await pairings.start(proxy_key())
    assert await store.fetch_all("SELECT digest FROM pairings") == [(sha256(start.device_code),)]
    assert start.device_code not in repr(start)


async def test_finished_pairings_are_forgotten_after_an_hour(
    pairings: Pairings, clock: FakeClock
) -> None:
    old = await pairings.start(proxy_key())
    clock.advance(PAIRING_TTL_S + KEEP_FINISHED_S - 1)
    await pairings.start(proxy_key())
    assert (await pairings.poll(old.device_code)).state is PairingState.EXPIRED
    clock.advance(2)
    await pairings.start(proxy_key())
    await refused(RefusalKind.NOT_FOUND, pairings.poll(old.device_code))
