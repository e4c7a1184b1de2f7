"""Pairing: a telescope-side proxy and its owner agreeing on a telescope, in the device-code
pattern of RFC 8628.

The proxy starts a pairing with its public key and gets a secret device code (to poll with)
and a short user code to show, like "WDJB-MJHT". The owner, signed in, types the user code and
a name; the broker makes the telescope, bound to that proxy key, with the owner as its owner.
The proxy's next poll says paired, with the telescope id.

Guessing: a user code is 8 letters of 20 (34 bits). Its first half finds the pairing, its second
half is checked; every wrong second half counts against that pairing, which locks after
`MAX_WRONG_TRIES`, and every wrong code counts against the account typing it, which is held off
after `ACCOUNT_WRONG_TRIES` in `ACCOUNT_WINDOW_S`. Both counts live in the store, so they hold
across brokers. A wrong code is "no such code" whichever half is wrong (a locked one says so).
"""

from __future__ import annotations

import hmac
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.store import Store, StoreConflict, Transaction, sha256
from scopelink.broker.telescopes import (
    Telescope,
    pair_telescope,
    proxy_key,
    valid_telescope_name,
)

__all__ = ["PairingStart", "PairingState", "PairingStatus", "Pairings", "normalise_user_code"]

#: RFC 8628 §6.1: consonants only (no words spelled, no 0/O or 1/I to confuse).
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
PAIRING_TTL_S = 600
POLL_INTERVAL_S = 2
MAX_WRONG_TRIES = 5
ACCOUNT_WRONG_TRIES = 10
ACCOUNT_WINDOW_S = 900.0
#: Finished pairings are kept this long past their expiry, so a late poll still hears the end.
KEEP_FINISHED_S = 3600.0
NO_SUCH_CODE = "no pairing waits for that code; check the code the proxy shows"
START_AGAIN = "start pairing again on the proxy for a new code"


class PairingState(StrEnum):
    """Where a pairing is, as its proxy sees it when polling."""

    PENDING = "pending"  # waiting for the owner to type the code
    PAIRED = "paired"
    EXPIRED = "expired"  # not claimed in time: start again
    LOCKED = "locked"  # too many wrong tries at its code: start again


@dataclass(frozen=True, slots=True)
class PairingStart:
    """What a proxy gets when it starts pairing: the secret to poll with, the code to show."""

    device_code: str = field(repr=False)
    user_code: str
    expires_in: int = PAIRING_TTL_S
    interval: int = POLL_INTERVAL_S


@dataclass(frozen=True, slots=True)
class PairingStatus:
    """A poll's answer; `telescope_id` once paired."""

    state: PairingState
    telescope_id: str | None = None


def normalise_user_code(text: str) -> str:
    """A typed user code as stored: upper case, without the dash or spaces."""
    return "".join(text.split()).replace("-", "").upper()


class Pairings:
    """Pairings of proxies with telescopes over a `Store`."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def start(self, proxy_public_key_pem: str) -> PairingStart:
        """A new pairing for the proxy holding this key."""
        key = proxy_key(proxy_public_key_pem)
        now = self._clock()
        await self._store.execute(
            "DELETE FROM pairings WHERE expires < ?", (now - KEEP_FINISHED_S,)
        )
        device_code = secrets.token_urlsafe(32)
        for _ in range(8):  # another pending code may already start with the same half
            code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))
            added = await self._store.execute(
                "INSERT INTO pairings (digest, user_code, proxy_key, created, expires) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (sha256(device_code), code, key, now, now + PAIRING_TTL_S),
            )
            if added:
                return PairingStart(device_code, f"{code[:4]}-{code[4:]}")
        raise BrokerRefusal(
            RefusalKind.RATE_LIMITED, "too many pairings are waiting; try again in a minute"
        )

    async def claim(self, user_code: str, account_id: str, telescope_name: str) -> Telescope:
        """Pair the proxy showing `user_code` as telescope `telescope_name` of `account_id`."""
        code = normalise_user_code(user_code)
        if len(code) != USER_CODE_LENGTH or any(c not in USER_CODE_ALPHABET for c in code):
            raise BrokerRefusal(RefusalKind.INVALID, "a pairing code is 8 letters, like WDJB-MJHT")
        name = valid_telescope_name(telescope_name)
        try:
            async with self._store.transaction() as tx:
                # Refusals are returned, not raised: the counts of wrong tries must commit.
                outcome = await self._claim(tx, code, account_id, name, self._clock())
        except StoreConflict:  # e.g. one proxy key claimed through two codes at the same moment
            raise BrokerRefusal(
                RefusalKind.CONFLICT, "the pairing changed meanwhile; try again"
            ) from None
        if isinstance(outcome, BrokerRefusal):
            raise outcome
        return outcome

    async def poll(self, device_code: str) -> PairingStatus:
        """How the pairing of `device_code` stands."""
        row = await self._store.fetch_one(
            "SELECT expires, telescope_id, attempts FROM pairings WHERE digest = ?",
            (sha256(device_code),),
        )
        if row is None:
            raise BrokerRefusal(RefusalKind.NOT_FOUND, f"no such pairing; {START_AGAIN}")
        expires, telescope_id, attempts = row
        if telescope_id is not None:
            return PairingStatus(PairingState.PAIRED, telescope_id)
        if attempts >= MAX_WRONG_TRIES:
            return PairingStatus(PairingState.LOCKED)
        if expires <= self._clock():
            return PairingStatus(PairingState.EXPIRED)
        return PairingStatus(PairingState.PENDING)

    async def _claim(
        self, tx: Transaction, code: str, account_id: str, name: str, now: float
    ) -> Telescope | BrokerRefusal:
        held_off = await _held_off(tx, account_id, now)
        if held_off is not None:
            return held_off
        lookup = (code[: USER_CODE_LENGTH // 2],)
        # A no-op write first: it row-locks the pairing in PostgreSQL, so two claims take turns.
        await tx.execute(
            "UPDATE pairings SET attempts = attempts WHERE substr(user_code, 1, 4) = ?", lookup
        )
        row = await tx.fetch_one(
            "SELECT digest, user_code, proxy_key, expires, telescope_id, attempts "
            "FROM pairings WHERE substr(user_code, 1, 4) = ?",
            lookup,
        )
        if row is None:
            await _count_wrong_try(tx, account_id, now)
            return BrokerRefusal(RefusalKind.NOT_FOUND, NO_SUCH_CODE)
        digest, stored, key, expires, telescope_id, attempts = row
        if attempts >= MAX_WRONG_TRIES:
            return BrokerRefusal(
                RefusalKind.RATE_LIMITED,
                f"this code is locked after {MAX_WRONG_TRIES} wrong tries; {START_AGAIN}",
            )
        if not hmac.compare_digest(stored, code):
            await tx.execute(
                "UPDATE pairings SET attempts = attempts + 1 WHERE digest = ?", (digest,)
            )
            await _count_wrong_try(tx, account_id, now)
            return BrokerRefusal(RefusalKind.NOT_FOUND, NO_SUCH_CODE)
        if telescope_id is not None:
            return BrokerRefusal(RefusalKind.CONFLICT, "this code was already used")
        if expires <= now:
            return BrokerRefusal(RefusalKind.EXPIRED, f"this code has expired; {START_AGAIN}")
        telescope = await pair_telescope(tx, key, account_id, name, now)
        if isinstance(telescope, Telescope):
            await tx.execute(
                "UPDATE pairings SET telescope_id = ? WHERE digest = ?", (telescope.id, digest)
            )
        return telescope


async def _held_off(tx: Transaction, account_id: str, now: float) -> BrokerRefusal | None:
    row = await tx.fetch_one(
        "SELECT failures, window_start FROM claim_failures WHERE account_id = ?", (account_id,)
    )
    if row is None or row[0] < ACCOUNT_WRONG_TRIES or row[1] <= now - ACCOUNT_WINDOW_S:
        return None
    minutes = math.ceil((row[1] + ACCOUNT_WINDOW_S - now) / 60)
    return BrokerRefusal(
        RefusalKind.RATE_LIMITED, f"too many wrong pairing codes; try again in {minutes} min"
    )


async def _count_wrong_try(tx: Transaction, account_id: str, now: float) -> None:
    # One window per account: a try after the window has passed starts a new one.
    await tx.execute(
        "INSERT INTO claim_failures (account_id, failures, window_start) VALUES (?, 1, ?) "
        "ON CONFLICT (account_id) DO UPDATE SET "
        "failures = CASE WHEN claim_failures.window_start <= ? THEN 1 "
        "ELSE claim_failures.failures + 1 END, "
        "window_start = CASE WHEN claim_failures.window_start <= ? THEN ? "
        "ELSE claim_failures.window_start END",
        (account_id, now, now - ACCOUNT_WINDOW_S, now - ACCOUNT_WINDOW_S, now),
    )
