"""Invitations to a telescope (`scopelink.broker.invitations`), on both stores."""

from __future__ import annotations

import asyncio

import pytest

from scopelink.broker.accounts import Account
from scopelink.broker.invitations import INVITATION_TTL_S, Invitations
from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.store import Store, sha256
from scopelink.broker.telescopes import Telescope, Telescopes
from scopelink.grants import TelescopeRole
from tests.broker.conftest import FakeClock, join, refused


async def test_an_invitation_gives_its_role_once(
    invitations: Invitations,
    telescopes: Telescopes,
    telescope: Telescope,
    ada: Account,
    bob: Account,
    cyd: Account,
) -> None:
    invitation = await invitations.invite(ada.id, telescope.id, "operator")
    assert invitation.code.startswith("sli_") and invitation.code not in repr(invitation)
    assert await invitations.accept(invitation.code, bob.id) == (
        telescope,
        TelescopeRole.OPERATOR,
    )
    assert await telescopes.role_of(bob.id, telescope.id) is TelescopeRole.OPERATOR
    detail = await refused(RefusalKind.CONFLICT, invitations.accept(invitation.code, cyd.id))
    assert detail == "this invitation was already used"


async def test_an_invitation_lasts_a_week_by_default(
    invitations: Invitations, telescope: Telescope, ada: Account, bob: Account, clock: FakeClock
) -> None:
    invitation = await invitations.invite(ada.id, telescope.id, "viewer")
    assert invitation.expires == clock.now + INVITATION_TTL_S == clock.now + 7 * 24 * 3600
    clock.advance(INVITATION_TTL_S)
    await refused(RefusalKind.EXPIRED, invitations.accept(invitation.code, bob.id))
    short = await invitations.invite(ada.id, telescope.id, "viewer", ttl_s=60)
    clock.advance(59)
    await invitations.accept(short.code, bob.id)


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_a_viewer_or_operator_cannot_invite(
    invitations: Invitations,
    telescope: Telescope,
    ada: Account,
    bob: Account,
    role: str,
) -> None:
    await join(invitations, ada, telescope, bob, role)
    detail = await refused(
        RefusalKind.FORBIDDEN, invitations.invite(bob.id, telescope.id, "viewer")
    )
    assert detail == "only an owner of this telescope may invite"


async def test_a_stranger_cannot_invite(
    invitations: Invitations, telescope: Telescope, bob: Account
) -> None:
    await refused(RefusalKind.FORBIDDEN, invitations.invite(bob.id, telescope.id, "viewer"))


async def test_owners_are_made_by_a_role_change_not_an_invitation(
    invitations: Invitations, telescope: Telescope, ada: Account
) -> None:
    for role in ("owner", "admiral"):
        await refused(RefusalKind.INVALID, invitations.invite(ada.id, telescope.id, role))


async def test_an_invitation_never_lowers_a_role(
    invitations: Invitations,
    telescopes: Telescopes,
    telescope: Telescope,
    ada: Account,
    bob: Account,
    cyd: Account,
) -> None:
    down = await invitations.invite(ada.id, telescope.id, "viewer")
    detail = await refused(RefusalKind.CONFLICT, invitations.accept(down.code, ada.id))
    assert detail == "you are already owner of this telescope"
    await join(invitations, ada, telescope, bob, "viewer")
    await join(invitations, ada, telescope, bob, "operator")  # up is fine
    assert await telescopes.role_of(bob.id, telescope.id) is TelescopeRole.OPERATOR
    # The refused invitation was not used up.
    assert (await invitations.accept(down.code, cyd.id))[1] is TelescopeRole.VIEWER


async def test_an_unknown_code_is_not_found(invitations: Invitations, bob: Account) -> None:
    await refused(RefusalKind.NOT_FOUND, invitations.accept("sli_made-up", bob.id))
    await refused(RefusalKind.NOT_FOUND, invitations.accept("something else", bob.id))


async def test_two_people_accepting_one_invitation_at_once_get_one_role(
    invitations: Invitations,
    telescopes: Telescopes,
    telescope: Telescope,
    ada: Account,
    bob: Account,
    cyd: Account,
) -> None:
    invitation = await invitations.invite(ada.id, telescope.id, "viewer")
    results = await asyncio.gather(
        invitations.accept(invitation.code, bob.id),
        invitations.accept(invitation.code, cyd.id),
        return_exceptions=True,
    )
    assert sum(isinstance(r, BrokerRefusal) for r in results) == 1
    roles = [await telescopes.role_of(a.id, telescope.id) for a in (bob, cyd)]
    assert roles.count(TelescopeRole.VIEWER) == 1


async def test_the_code_is_kept_only_as_its_digest(
    invitations: Invitations, telescope: Telescope, ada: Account, store: Store
) -> None:
    invitation = await invitations.invite(ada.id, telescope.id, "viewer")
    assert await store.fetch_all("SELECT digest FROM invitations") == [(sha256(invitation.code),)]
