"""Invitations: an owner gives someone a role on a telescope with a code, shown once, used once.

The code is 24 random bytes; the store keeps only its SHA-256, with the telescope, the role
(operator or viewer; owners are made with `Telescopes.change_role`), its maker and expiry.
Accepting never lowers a role an account already holds.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.store import Store, sha256
from scopelink.broker.telescopes import Telescope, Telescopes, outranks
from scopelink.grants import TelescopeRole

__all__ = ["Invitations", "IssuedInvitation"]

INVITATION_PREFIX = "sli_"
INVITATION_TTL_S = 7 * 24 * 3600.0
INVITABLE = (TelescopeRole.OPERATOR, TelescopeRole.VIEWER)
NO_SUCH_INVITATION = "no such invitation; check the code"


@dataclass(frozen=True, slots=True)
class IssuedInvitation:
    """A new invitation: `code` is shown to the owner this once, to pass on."""

    code: str = field(repr=False)
    telescope_id: str
    role: TelescopeRole
    expires: float


class Invitations:
    """Invitations to telescopes over a `Store`."""

    def __init__(
        self, store: Store, telescopes: Telescopes, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._telescopes = telescopes
        self._clock = clock

    async def invite(
        self,
        owner_id: str,
        telescope_id: str,
        role: TelescopeRole | str,
        ttl_s: float = INVITATION_TTL_S,
    ) -> IssuedInvitation:
        """A code that makes whoever accepts it `role` on `telescope_id` (owners only)."""
        if role not in {r.value for r in INVITABLE}:
            raise BrokerRefusal(
                RefusalKind.INVALID,
                f"one invites operators and viewers, not {role!r}; "
                "make a member an owner by changing their role",
            )
        if ttl_s <= 0:
            raise BrokerRefusal(RefusalKind.INVALID, "an invitation's lifetime must be positive")
        if await self._telescopes.role_of(owner_id, telescope_id) is not TelescopeRole.OWNER:
            raise BrokerRefusal(RefusalKind.FORBIDDEN, "only an owner of this telescope may invite")
        code = INVITATION_PREFIX + secrets.token_urlsafe(24)
        now = self._clock()
        invitation = IssuedInvitation(code, telescope_id, TelescopeRole(role), now + ttl_s)
        await self._store.execute(
            "INSERT INTO invitations (digest, telescope_id, role, created_by, created, expires) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sha256(code), telescope_id, invitation.role.value, owner_id, now, invitation.expires),
        )
        return invitation

    async def accept(self, code: str, account_id: str) -> tuple[Telescope, TelescopeRole]:
        """Use invitation `code` for `account_id`: the telescope and the role now held."""
        if not code.startswith(INVITATION_PREFIX):
            raise BrokerRefusal(RefusalKind.NOT_FOUND, NO_SUCH_INVITATION)
        digest = sha256(code)
        now = self._clock()
        async with self._store.transaction() as tx:
            row = await tx.fetch_one(
                "SELECT telescope_id, role, expires, used_by FROM invitations WHERE digest = ?",
                (digest,),
            )
            if row is None:
                raise BrokerRefusal(RefusalKind.NOT_FOUND, NO_SUCH_INVITATION)
            telescope_id, role, expires, used_by = row[0], TelescopeRole(row[1]), row[2], row[3]
            if used_by is not None:
                raise BrokerRefusal(RefusalKind.CONFLICT, "this invitation was already used")
            if expires <= now:
                raise BrokerRefusal(
                    RefusalKind.EXPIRED, "this invitation has expired; ask for a new one"
                )
            held = await tx.fetch_one(
                "SELECT role FROM members WHERE telescope_id = ? AND account_id = ?",
                (telescope_id, account_id),
            )
            if held is not None and not outranks(role, TelescopeRole(held[0])):
                raise BrokerRefusal(
                    RefusalKind.CONFLICT, f"you are already {held[0]} of this telescope"
                )
            # Conditional, so two accepting at once (even on two brokers) cannot both use it.
            used = await tx.execute(
                "UPDATE invitations SET used_by = ?, used_at = ? "
                "WHERE digest = ? AND used_by IS NULL",
                (account_id, now, digest),
            )
            if not used:
                raise BrokerRefusal(RefusalKind.CONFLICT, "this invitation was already used")
            await tx.execute(
                "INSERT INTO members (telescope_id, account_id, role, since) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (telescope_id, account_id) DO UPDATE SET role = excluded.role",
                (telescope_id, account_id, role.value, now),
            )
        return await self._telescopes.get(telescope_id), role
