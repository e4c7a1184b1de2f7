"""Who a caller is and what they may do, for every entry point (`serve`, the telescope-side
`proxy` and the `broker`): identities, roles and the checks on them, with no web framework.

- `Caller`: a role and a stable, non-secret client id (rate limits, idempotency keys and the
  control lease are per client; the id never reveals a token).
- `TokenBook`: the access tokens configured for a server, each with its role; a presented token
  is compared in constant time and named by a digest prefix, never by itself.
- `GrantBook`: on a telescope-side proxy, a broker's grant exchanged once for a LAN session.
- The rules on roles: viewers watch, operators also command and control; a peer session may be
  changed by its creator or an operator.

Transports apply these (`web/security.py` for HTTP and WebSocket) and map a refusal to their own
terms.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

from scopelink.grants import Grant, GrantVerifier
from scopelink.schema.commands import Role

__all__ = ["Caller", "GrantBook", "Role", "TokenBook", "grant_caller", "may_command"]

#: Why a viewer's command is refused (the same words on every transport).
VIEWERS_WATCH = "viewers may watch but not command the telescope; sign in with an operator token"
#: Why a viewer's lease action is refused.
VIEWERS_DO_NOT_CONTROL = "viewers may watch but not control the telescope"


def may_command(role: Role) -> bool:
    """Whether `role` may send commands and take part in the control lease."""
    return role is Role.OPERATOR


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: their role and a stable, non-secret id."""

    role: Role
    client: str
    #: A name proven by the caller's credentials (a broker account's, from its grant); None for
    #: a token or an address. It is what the audit log records as `who`.
    name: str | None = None

    @property
    def may_command(self) -> bool:
        return may_command(self.role)

    def may_change(self, owner_client: str) -> bool:
        """Whether this caller may change something another client made (a peer session):
        its own, or anything for an operator."""
        return self.may_command or self.client == owner_client


class TokenBook:
    """The access tokens of a server and their roles (none: every caller is an operator, named
    by its address)."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = {token: Role(role) for token, role in tokens.items()}

    @property
    def required(self) -> bool:
        return bool(self._tokens)

    def caller(self, token: str | None, peer: str) -> Caller | None:
        """The caller presenting `token` from address `peer`; None when tokens are required and
        this one is missing or unknown."""
        if not self._tokens:
            return Caller(Role.OPERATOR, peer)
        if token is None:
            return None
        for known, role in self._tokens.items():
            if hmac.compare_digest(known.encode(), token.encode()):
                return Caller(role, f"token-{hashlib.sha256(known.encode()).hexdigest()[:12]}")
        return None


def grant_caller(grant: Grant) -> Caller:
    """The caller a broker's grant makes: its account (all of that account's tabs share one
    client id, as one token's do) with the session role of its telescope role."""
    return Caller(grant.role.session_role, f"account-{grant.account_id}", grant.name)


#: How long a LAN session made from a grant lasts (the grant itself lasts a minute).
LAN_SESSION_S = 12 * 3600
#: LAN sessions held at most; the oldest is forgotten first.
MAX_LAN_SESSIONS = 1000


class GrantBook:
    """The proxy's LAN sessions: a broker's grant, presented once to the proxy's own page (a
    direct connection on the telescope's network), becomes a session token for that page.

    The grant is checked by the same `GrantVerifier` as the broker link's, so it is accepted
    once across both paths. Session tokens are random, kept in memory only, and each names
    its caller (role and account) until it expires.
    """

    def __init__(self, verifier: GrantVerifier, *, ttl_s: float = LAN_SESSION_S) -> None:
        self.verifier = verifier
        self.ttl_s = ttl_s
        self._sessions: dict[str, tuple[Caller, float]] = {}

    def exchange(self, grant: str, now: float | None = None) -> tuple[str, Caller, float]:
        """A session token for a valid grant (raises `GrantRefused` with the reason)."""
        now = time.time() if now is None else now
        caller = grant_caller(self.verifier.verify(grant, now))
        token = "lan_" + secrets.token_urlsafe(32)
        expires = now + self.ttl_s
        self._sessions[token] = (caller, expires)
        while len(self._sessions) > MAX_LAN_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        return token, caller, expires

    def caller(self, token: str | None, now: float | None = None) -> Caller | None:
        if token is None or not token.startswith("lan_"):
            return None
        held = self._sessions.get(token)
        if held is None:
            return None
        caller, expires = held
        if (time.time() if now is None else now) >= expires:
            del self._sessions[token]
            return None
        return caller

    def end_account(self, account_id: str) -> int:
        """Forget the sessions of an account whose role was revoked; how many."""
        client = f"account-{account_id}"
        ended = [t for t, (c, _) in self._sessions.items() if c.client == client]
        for token in ended:
            del self._sessions[token]
        return len(ended)
