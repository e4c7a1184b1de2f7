"""Accounts: who may use the broker, signed in by name and password or by an API token.

Passwords are hashed with argon2id (argon2-cffi's `PasswordHasher`, rehashed at sign-in when its
parameters change); an unknown name costs the same hash check as a known one. An API token is 32
random bytes shown once; the store keeps only its SHA-256. Nothing here logs or returns a secret
after it is issued.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.store import Store, sha256

__all__ = ["Account", "Accounts", "IssuedToken", "TokenInfo"]

#: Account names: ASCII letters, digits, `.`, `_` and `-`, 3 to 64 of them (ASCII, so that
#: "case-insensitive" means the same in SQLite and PostgreSQL).
NAME_RULE = re.compile(r"[A-Za-z0-9._-]{3,64}")
MIN_PASSWORD = 10
#: A bound on what a sign-in makes us hash; longer is no safer.
MAX_PASSWORD = 1024
TOKEN_PREFIX = "slk_"
#: Hex digits of a token's digest that name it in lists and revocations (not secret).
TOKEN_ID_LENGTH = 16
MAX_LABEL = 100
#: `last_used` is written at most this often (seconds), not on every request of a busy client.
LAST_USED_RESOLUTION_S = 60.0
WRONG_CREDENTIALS = "wrong name or password"


@dataclass(frozen=True, slots=True)
class Account:
    """A broker account (no secret in it)."""

    id: str
    name: str
    created: float


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new API token: `token` is shown to its owner this once and never again."""

    token: str = field(repr=False)
    id: str
    label: str
    expires: float | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """An API token as its owner sees it in a list: everything but the token."""

    id: str
    label: str
    created: float
    last_used: float | None
    expires: float | None


class Accounts:
    """Accounts, passwords and API tokens over a `Store`."""

    def __init__(
        self,
        store: Store,
        *,
        hasher: PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._hasher = hasher or PasswordHasher()
        self._clock = clock
        self._dummy_hash: str | None = None

    async def create(self, name: str, password: str) -> Account:
        """A new account; refused if the name is taken (in any case) or the password short."""
        if not NAME_RULE.fullmatch(name):
            raise BrokerRefusal(
                RefusalKind.INVALID,
                "a name is 3 to 64 letters, digits, '.', '_' or '-' (no spaces)",
            )
        if len(password) < MIN_PASSWORD:
            raise BrokerRefusal(
                RefusalKind.INVALID, f"a password needs at least {MIN_PASSWORD} characters"
            )
        if len(password) > MAX_PASSWORD:
            raise BrokerRefusal(
                RefusalKind.INVALID, f"a password has at most {MAX_PASSWORD} characters"
            )
        taken = RefusalKind.CONFLICT, f"the name {name!r} is taken"
        if await self._row_for_name(name) is not None:  # before the costly hash
            raise BrokerRefusal(*taken)
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        account = Account(f"acct_{secrets.token_hex(8)}", name, self._clock())
        added = await self._store.execute(
            "INSERT INTO accounts (id, name, password_hash, created) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            (account.id, account.name, password_hash, account.created),
        )
        if not added:  # taken meanwhile, by another request or broker
            raise BrokerRefusal(*taken)
        return account

    async def login(self, name: str, password: str) -> Account:
        """The account `name` (any case) if `password` is its password."""
        row = await self._row_for_name(name) if NAME_RULE.fullmatch(name) else None
        # An unknown name is checked against a dummy hash, so timing does not tell names apart.
        stored = row[3] if row is not None else await self._dummy()
        matches = len(password) <= MAX_PASSWORD and await asyncio.to_thread(
            self._matches, stored, password
        )
        if row is None or not matches:
            raise BrokerRefusal(RefusalKind.UNAUTHORIZED, WRONG_CREDENTIALS)
        account = Account(row[0], row[1], row[2])
        if self._hasher.check_needs_rehash(stored):
            fresh = await asyncio.to_thread(self._hasher.hash, password)
            # Only if unchanged meanwhile: a password change wins over our rehash.
            await self._store.execute(
                "UPDATE accounts SET password_hash = ? WHERE id = ? AND password_hash = ?",
                (fresh, account.id, stored),
            )
        return account

    async def get(self, account_id: str) -> Account:
        row = await self._store.fetch_one(
            "SELECT id, name, created FROM accounts WHERE id = ?", (account_id,)
        )
        if row is None:
            raise BrokerRefusal(RefusalKind.NOT_FOUND, f"no account {account_id!r}")
        return Account(*row)

    async def issue_token(
        self, account_id: str, label: str, ttl_s: float | None = None
    ) -> IssuedToken:
        """A new API token for `account_id`, valid for `ttl_s` seconds (None: until revoked)."""
        label = label.strip()
        if not 1 <= len(label) <= MAX_LABEL or not label.isprintable():
            raise BrokerRefusal(
                RefusalKind.INVALID, f"a token label is 1 to {MAX_LABEL} printable characters"
            )
        if ttl_s is not None and ttl_s <= 0:
            raise BrokerRefusal(RefusalKind.INVALID, "a token's lifetime must be positive")
        await self.get(account_id)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = sha256(token)
        now = self._clock()
        expires = None if ttl_s is None else now + ttl_s
        await self._store.execute(
            "INSERT INTO api_tokens (digest, account_id, label, created, last_used, expires) "
            "VALUES (?, ?, ?, ?, NULL, ?)",
            (digest, account_id, label, now, expires),
        )
        return IssuedToken(token, digest[:TOKEN_ID_LENGTH], label, expires)

    async def account_for_token(self, token: str) -> Account:
        """Whose API token `token` is; refused if unknown, revoked or expired."""
        if not token.startswith(TOKEN_PREFIX):
            raise BrokerRefusal(RefusalKind.UNAUTHORIZED, "not a scopelink API token")
        # Looked up by digest: an index search on a hash tells a timer nothing about tokens.
        digest = sha256(token)
        row = await self._store.fetch_one(
            "SELECT a.id, a.name, a.created, t.expires, t.last_used "
            "FROM api_tokens t JOIN accounts a ON a.id = t.account_id WHERE t.digest = ?",
            (digest,),
        )
        if row is None:
            raise BrokerRefusal(RefusalKind.UNAUTHORIZED, "unknown or revoked API token")
        now = self._clock()
        expires, last_used = row[3], row[4]
        if expires is not None and expires <= now:
            raise BrokerRefusal(RefusalKind.EXPIRED, "this API token has expired; issue a new one")
        if last_used is None or now - last_used >= LAST_USED_RESOLUTION_S:
            await self._store.execute(
                "UPDATE api_tokens SET last_used = ? WHERE digest = ?", (now, digest)
            )
        return Account(row[0], row[1], row[2])

    async def tokens(self, account_id: str) -> list[TokenInfo]:
        """The API tokens of `account_id`, newest first."""
        rows = await self._store.fetch_all(
            "SELECT digest, label, created, last_used, expires FROM api_tokens "
            "WHERE account_id = ? ORDER BY created DESC",
            (account_id,),
        )
        return [TokenInfo(row[0][:TOKEN_ID_LENGTH], *row[1:]) for row in rows]

    async def revoke_token(self, account_id: str, token_id: str) -> None:
        """Revoke the API token of `account_id` named `token_id` (`IssuedToken.id`)."""
        removed = await self._store.execute(
            "DELETE FROM api_tokens WHERE account_id = ? AND substr(digest, 1, ?) = ?",
            (account_id, TOKEN_ID_LENGTH, token_id),
        )
        if not removed:
            raise BrokerRefusal(RefusalKind.NOT_FOUND, f"no API token {token_id!r} to revoke")

    async def _row_for_name(self, name: str) -> tuple[str, str, float, str] | None:
        row = await self._store.fetch_one(
            "SELECT id, name, created, password_hash FROM accounts WHERE lower(name) = lower(?)",
            (name,),
        )
        return None if row is None else (row[0], row[1], row[2], row[3])

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(16))
        return self._dummy_hash

    def _matches(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
