"""Telescopes: each one a paired proxy, its members and their roles, and the grants that let a
member's browser in.

A telescope is bound to its proxy's public key; a proxy that claims another telescope is refused.
Owners manage members (change roles, remove them); there is always at least one owner. A grant
is issued for the role an account holds at that moment, so a removed member gets no new one.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.store import Store, Transaction
from scopelink.grants import DEFAULT_TTL_S, GrantSigner, TelescopeRole, normalise_public_key_pem

__all__ = [
    "Member",
    "Telescope",
    "Telescopes",
    "outranks",
    "pair_telescope",
    "proxy_key",
    "valid_telescope_name",
]

MAX_NAME = 64
_RANK = {TelescopeRole.VIEWER: 1, TelescopeRole.OPERATOR: 2, TelescopeRole.OWNER: 3}
_COLUMNS = "t.id, t.name, t.paired_by, t.proxy_key, t.created"
NOT_AN_OWNER = "only an owner of this telescope may do that"


@dataclass(frozen=True, slots=True)
class Telescope:
    """A paired telescope: its id (the `aud` of its grants), name and proxy key."""

    id: str
    name: str
    paired_by: str
    proxy_key: str
    created: float


@dataclass(frozen=True, slots=True)
class Member:
    """An account's role on a telescope."""

    account_id: str
    name: str
    role: TelescopeRole
    since: float


def outranks(role: TelescopeRole, other: TelescopeRole) -> bool:
    """Whether `role` may do more than `other` (owner > operator > viewer)."""
    return _RANK[role] > _RANK[other]


def valid_telescope_name(text: str) -> str:
    """A telescope name as typed, trimmed; refused when empty, too long or unprintable."""
    name = text.strip()
    if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
        raise BrokerRefusal(
            RefusalKind.INVALID, f"a telescope name is 1 to {MAX_NAME} printable characters"
        )
    return name


def proxy_key(public_key_pem: str) -> str:
    """A proxy's public key in its one stored spelling; refused if it is not an Ed25519 key."""
    try:
        return normalise_public_key_pem(public_key_pem)
    except ValueError as error:
        raise BrokerRefusal(RefusalKind.INVALID, f"proxy key: {error}") from None


async def pair_telescope(
    tx: Transaction, key: str, account_id: str, name: str, now: float
) -> Telescope | BrokerRefusal:
    """The telescope of proxy `key`, made with `account_id` as its owner, or the one that key
    already has (renamed) if `account_id` owns it: a re-paired proxy keeps its telescope."""
    row = await tx.fetch_one(
        f"SELECT {_COLUMNS} FROM telescopes t WHERE t.proxy_key = ?",
        (key,),
    )
    if row is not None:
        telescope = Telescope(*row)
        if await _role_in(tx, account_id, telescope.id) is not TelescopeRole.OWNER:
            return BrokerRefusal(
                RefusalKind.FORBIDDEN,
                "this proxy is already paired with a telescope you do not own",
            )
        await tx.execute("UPDATE telescopes SET name = ? WHERE id = ?", (name, telescope.id))
        return Telescope(telescope.id, name, *row[2:])
    telescope = Telescope(f"tel_{secrets.token_hex(8)}", name, account_id, key, now)
    await tx.execute(
        "INSERT INTO telescopes (id, name, paired_by, proxy_key, created) VALUES (?, ?, ?, ?, ?)",
        (telescope.id, name, account_id, key, now),
    )
    await tx.execute(
        "INSERT INTO members (telescope_id, account_id, role, since) VALUES (?, ?, ?, ?)",
        (telescope.id, account_id, TelescopeRole.OWNER.value, now),
    )
    return telescope


class Telescopes:
    """Telescopes, members and roles over a `Store`, and the grants for them."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def get(self, telescope_id: str) -> Telescope:
        row = await self._store.fetch_one(
            f"SELECT {_COLUMNS} FROM telescopes t WHERE t.id = ?",
            (telescope_id,),
        )
        if row is None:
            raise BrokerRefusal(RefusalKind.NOT_FOUND, f"no telescope {telescope_id!r}")
        return Telescope(*row)

    async def telescope_for_proxy(self, public_key_pem: str) -> Telescope:
        """The telescope paired with the proxy holding this key."""
        row = await self._store.fetch_one(
            f"SELECT {_COLUMNS} FROM telescopes t WHERE t.proxy_key = ?",
            (proxy_key(public_key_pem),),
        )
        if row is None:
            raise BrokerRefusal(
                RefusalKind.NOT_FOUND, "this proxy is not paired with a telescope; pair it first"
            )
        return Telescope(*row)

    async def check_proxy_claim(self, public_key_pem: str, telescope_id: str) -> Telescope:
        """`telescope_id`'s telescope, if the proxy holding this key is the one paired with it."""
        try:
            telescope = await self.telescope_for_proxy(public_key_pem)
        except BrokerRefusal as refusal:
            if refusal.kind is RefusalKind.NOT_FOUND:
                raise BrokerRefusal(
                    RefusalKind.FORBIDDEN,
                    f"this proxy is not paired with telescope {telescope_id!r}",
                ) from None
            raise
        if telescope.id != telescope_id:
            raise BrokerRefusal(
                RefusalKind.FORBIDDEN,
                f"this proxy is paired with telescope {telescope.id!r}, not {telescope_id!r}",
            )
        return telescope

    async def role_of(self, account_id: str, telescope_id: str) -> TelescopeRole | None:
        """The role `account_id` holds on `telescope_id` now, if any."""
        async with self._store.transaction() as tx:
            return await _role_in(tx, account_id, telescope_id)

    async def telescopes_of(self, account_id: str) -> list[tuple[Telescope, TelescopeRole]]:
        """The telescopes `account_id` has a role on, with that role, by name."""
        rows = await self._store.fetch_all(
            f"SELECT {_COLUMNS}, m.role FROM telescopes t "
            "JOIN members m ON m.telescope_id = t.id WHERE m.account_id = ? ORDER BY t.name, t.id",
            (account_id,),
        )
        return [(Telescope(*row[:5]), TelescopeRole(row[5])) for row in rows]

    async def members(self, account_id: str, telescope_id: str) -> list[Member]:
        """Who has which role on `telescope_id`, owners first; for its members to see."""
        async with self._store.transaction() as tx:
            if await _role_in(tx, account_id, telescope_id) is None:
                raise BrokerRefusal(RefusalKind.FORBIDDEN, "only members may list members")
            rows = await tx.fetch_all(
                "SELECT m.account_id, a.name, m.role, m.since FROM members m "
                "JOIN accounts a ON a.id = m.account_id WHERE m.telescope_id = ?",
                (telescope_id,),
            )
        members = [Member(row[0], row[1], TelescopeRole(row[2]), row[3]) for row in rows]
        return sorted(members, key=lambda m: (-_RANK[m.role], m.name.lower()))

    async def change_role(
        self, owner_id: str, telescope_id: str, account_id: str, role: TelescopeRole | str
    ) -> None:
        """Give member `account_id` another `role` (owners only; the last owner stays one)."""
        role = _role(role)
        async with self._store.transaction() as tx:
            current = await self._owner_acts_on(tx, owner_id, telescope_id, account_id)
            if current is TelescopeRole.OWNER and role is not TelescopeRole.OWNER:
                await _keep_an_owner(tx, telescope_id)
            await tx.execute(
                "UPDATE members SET role = ? WHERE telescope_id = ? AND account_id = ?",
                (role.value, telescope_id, account_id),
            )

    async def revoke_member(self, owner_id: str, telescope_id: str, account_id: str) -> None:
        """Remove `account_id` from `telescope_id`: an owner removing anyone, or a member
        leaving; the last owner cannot leave."""
        async with self._store.transaction() as tx:
            if owner_id == account_id:  # leaving needs no owner
                await _lock_members(tx, telescope_id)
                current = await _role_in(tx, account_id, telescope_id)
                if current is None:
                    raise BrokerRefusal(RefusalKind.NOT_FOUND, "you are not a member")
            else:
                current = await self._owner_acts_on(tx, owner_id, telescope_id, account_id)
            if current is TelescopeRole.OWNER:
                await _keep_an_owner(tx, telescope_id)
            await tx.execute(
                "DELETE FROM members WHERE telescope_id = ? AND account_id = ?",
                (telescope_id, account_id),
            )
            # An invitation speaks for its maker: it goes when they do.
            await tx.execute(
                "DELETE FROM invitations WHERE telescope_id = ? AND created_by = ? "
                "AND used_by IS NULL",
                (telescope_id, account_id),
            )

    async def issue_grant(
        self,
        account_id: str,
        telescope_id: str,
        signer: GrantSigner,
        ttl_s: int = DEFAULT_TTL_S,
    ) -> str:
        """A signed grant for the role `account_id` holds on `telescope_id` now."""
        row = await self._store.fetch_one(
            "SELECT m.role, a.name FROM members m JOIN accounts a ON a.id = m.account_id "
            "WHERE m.telescope_id = ? AND m.account_id = ?",
            (telescope_id, account_id),
        )
        if row is None:
            raise BrokerRefusal(RefusalKind.FORBIDDEN, "you have no role on this telescope")
        return signer.issue(account_id, row[1], telescope_id, row[0], self._clock(), ttl_s)

    async def _owner_acts_on(
        self, tx: Transaction, owner_id: str, telescope_id: str, account_id: str
    ) -> TelescopeRole:
        """Check `owner_id` owns the telescope; the role member `account_id` holds on it."""
        await _lock_members(tx, telescope_id)
        if await _role_in(tx, owner_id, telescope_id) is not TelescopeRole.OWNER:
            raise BrokerRefusal(RefusalKind.FORBIDDEN, NOT_AN_OWNER)
        current = await _role_in(tx, account_id, telescope_id)
        if current is None:
            raise BrokerRefusal(RefusalKind.NOT_FOUND, "that account is not a member")
        return current


async def _role_in(tx: Transaction, account_id: str, telescope_id: str) -> TelescopeRole | None:
    row = await tx.fetch_one(
        "SELECT role FROM members WHERE telescope_id = ? AND account_id = ?",
        (telescope_id, account_id),
    )
    return None if row is None else TelescopeRole(row[0])


async def _lock_members(tx: Transaction, telescope_id: str) -> None:
    # A no-op write that row-locks the telescope in PostgreSQL (SQLite's BEGIN IMMEDIATE already
    # serialises): two owners removing each other at once cannot leave it with none.
    await tx.execute("UPDATE telescopes SET name = name WHERE id = ?", (telescope_id,))


async def _keep_an_owner(tx: Transaction, telescope_id: str) -> None:
    row = await tx.fetch_one(
        "SELECT count(*) FROM members WHERE telescope_id = ? AND role = ?",
        (telescope_id, TelescopeRole.OWNER.value),
    )
    if row is None or row[0] <= 1:
        raise BrokerRefusal(
            RefusalKind.CONFLICT,
            "a telescope needs an owner: make another member an owner first",
        )


def _role(role: TelescopeRole | str) -> TelescopeRole:
    try:
        return TelescopeRole(role)
    except ValueError:
        raise BrokerRefusal(
            RefusalKind.INVALID, f"unknown role {role!r}: owner, operator or viewer"
        ) from None
