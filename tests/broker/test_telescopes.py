"""Telescopes, members, roles and grants (`scopelink.broker.telescopes`), on both stores."""

from __future__ import annotations

import asyncio

from scopelink.broker.accounts import Account
from scopelink.broker.invitations import Invitations
from scopelink.broker.pairing import Pairings
from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.telescopes import Telescope, Telescopes
from scopelink.grants import GrantSigner, GrantVerifier, TelescopeRole, generate_private_key
from tests.broker.conftest import FakeClock, join, pair, proxy_key, refused

OWNER, OPERATOR, VIEWER = TelescopeRole.OWNER, TelescopeRole.OPERATOR, TelescopeRole.VIEWER


async def test_an_account_sees_its_telescopes_with_its_role_on_each(
    pairings: Pairings,
    telescopes: Telescopes,
    invitations: Invitations,
    ada: Account,
    bob: Account,
) -> None:
    balcony = await pair(pairings, ada, "Balcony")
    roof = await pair(pairings, bob, "Roof")
    await join(invitations, bob, roof, ada, "viewer")
    assert await telescopes.telescopes_of(ada.id) == [(balcony, OWNER), (roof, VIEWER)]
    assert await telescopes.telescopes_of(bob.id) == [(roof, OWNER)]
    assert await telescopes.role_of(bob.id, balcony.id) is None


async def test_a_proxy_claiming_a_telescope_it_was_not_paired_for_is_refused(
    pairings: Pairings, telescopes: Telescopes, ada: Account
) -> None:
    key = proxy_key()
    mine = await pair(pairings, ada, "Backyard", key)
    other = await pair(pairings, ada, "Roof")
    assert await telescopes.check_proxy_claim(key, mine.id) == mine
    detail = await refused(RefusalKind.FORBIDDEN, telescopes.check_proxy_claim(key, other.id))
    assert detail == f"this proxy is paired with telescope {mine.id!r}, not {other.id!r}"
    stranger = proxy_key()
    await refused(RefusalKind.FORBIDDEN, telescopes.check_proxy_claim(stranger, mine.id))
    await refused(RefusalKind.NOT_FOUND, telescopes.telescope_for_proxy(stranger))
    await refused(RefusalKind.INVALID, telescopes.check_proxy_claim("junk", mine.id))
    # The key is matched in its one spelling, whatever the line endings it arrives with.
    assert await telescopes.telescope_for_proxy(key.replace("\n", "\r\n")) == mine


async def test_a_member_gets_a_grant_for_the_role_they_hold_now(
    telescopes: Telescopes,
    invitations: Invitations,
    telescope: Telescope,
    ada: Account,
    bob: Account,
    clock: FakeClock,
) -> None:
    signer = GrantSigner(generate_private_key())
    verifier = GrantVerifier(signer.public_key_pem(), telescope.id)
    await join(invitations, ada, telescope, bob, "viewer")
    grant = verifier.verify(await telescopes.issue_grant(bob.id, telescope.id, signer), clock.now)
    assert (grant.account_id, grant.name, grant.role) == (bob.id, "bob", VIEWER)
    assert grant.expires_at == int(clock.now) + 60
    await telescopes.change_role(ada.id, telescope.id, bob.id, "operator")
    token = await telescopes.issue_grant(bob.id, telescope.id, signer, ttl_s=10)
    assert verifier.verify(token, clock.now).role is OPERATOR
    owner = verifier.verify(await telescopes.issue_grant(ada.id, telescope.id, signer), clock.now)
    assert owner.role is OWNER


async def test_without_a_role_there_is_no_grant(
    telescopes: Telescopes,
    invitations: Invitations,
    telescope: Telescope,
    ada: Account,
    bob: Account,
) -> None:
    signer = GrantSigner(generate_private_key())
    await refused(RefusalKind.FORBIDDEN, telescopes.issue_grant(bob.id, telescope.id, signer))
    await refused(RefusalKind.FORBIDDEN, telescopes.issue_grant(ada.id, "tel_nowhere", signer))
    await join(invitations, ada, telescope, bob, "operator")
    await telescopes.issue_grant(bob.id, telescope.id, signer)
    await telescopes.revoke_member(ada.id, telescope.id, bob.id)
    await refused(RefusalKind.FORBIDDEN, telescopes.issue_grant(bob.id, telescope.id, signer))


async def test_only_an_owner_removes_members(
    telescopes: Telescopes,
    invitations: Invitations,
    telescope: Telescope,
    ada: Account,
    bob: Account,
    cyd: Account,
) -> None:
    await join(invitations, ada, telescope, bob, "operator")
    await join(invitations, ada, telescope, cyd, "viewer")
    for someone in (bob, cyd):
        for target in (ada, bob, cyd):
            if target is not someone:
                await refused(
                    RefusalKind.FORBIDDEN,
                    telescopes.revoke_member(someone.id, telescope.id, target.id),
                )
    await telescopes.revoke_member(ada.id, telescope.id, cyd.id)
    assert await telescopes.role_of(cyd.id, telescope.id) is None
    await refused(RefusalKind.NOT_FOUND, telescopes.revoke_member(ada.id, telescope.id, cyd.id))


async def test_a_member_may_leave_but_the_last_owner_may_not(
    telescopes: Telescopes,
    invitations: Invitations,
    telescope: Telescope,
    ada: Account,
    bob: Account,
) -> None:
    await join(invitations, ada, telescope, bob, "viewer")
    detail = await refused(
        RefusalKind.CONFLICT, telescopes.revoke_member(ada.id, telescope.id, ada.id)
    )
    assert "needs an owner" in detail
    await telescopes.change_role(ada.id, telescope.id, bob.id, "owner")
    await telescopes.revoke_member(ada.id, telescope.id, ada.id)
    assert await telescopes.role_of(ada.id, telescope.id) is None
    await refused(RefusalKind.NOT_FOUND, telescopes.revoke_member(ada.id, telescope.id, ada.id))


async def test_two_owners_removing_each_other_at_once_leave_one_owner(
    telescopes: Telescopes,
    invitations: Invitations,
    telescope: Telescope,
    ada: Account,
    bob: Account,
) -> None:
    await join(invitations, ada, telescope, bob, "operator")
    await telescopes.change_role(ada.id, telescope.id, bob.id, "owner")
    results = await asyncio.gather(
        telescopes.revoke_member(ada.id, telescope.id, bob.id),
        telescopes.revoke_member(bob.id, telescope.id, ada.id),
        return_exceptions=True,
    )
    assert sum(isinstance(r, BrokerRefusal) for r in results) == 1
    roles = [await telescopes.role_of(someone.id, telescope.id) for someone in (ada, bob)]
    assert sorted(roles, key=str) == [None, OWNER]


async def test_an_owner_changes_roles_but_never_leaves_the_telescope_without_one(
    telescopes: Telescopes,
    invitations: Invitations,
    telescope: Telescope,
    ada: Account,
    bob: Account,
) -> None:
    await join(invitations, ada, telescope, bob, "viewer")
    await refused(
        RefusalKind.FORBIDDEN, telescopes.change_role(bob.id, telescope.id, bob.id, "owner")
    )
    await refused(
        RefusalKind.CONFLICT, telescopes.change_role(ada.id, telescope.id, ada.id, "viewer")
    )
    await refused(
        RefusalKind.INVALID, telescopes.change_role(ada.id, telescope.id, bob.id, "admiral")
    )
    await telescopes.change_role(ada.id, telescope.id, bob.id, "owner")
    await telescopes.change_role(ada.id, telescope.id, ada.id, "viewer")
    assert await telescopes.role_of(ada.id, telescope.id) is VIEWER


async def test_members_are_listed_owners_first_and_only_to_members(
    telescopes: Telescopes,
    invitations: Invitations,
    telescope: Telescope,
    ada: Account,
    bob: Account,
    cyd: Account,
) -> None:
    await join(invitations, ada, telescope, cyd, "viewer")
    await join(invitations, ada, telescope, bob, "operator")
    members = await telescopes.members(cyd.id, telescope.id)
    assert [(m.name, m.role) for m in members] == [
        ("ada", OWNER),
        ("bob", OPERATOR),
        ("cyd", VIEWER),
    ]
    await telescopes.revoke_member(ada.id, telescope.id, cyd.id)
    await refused(RefusalKind.FORBIDDEN, telescopes.members(cyd.id, telescope.id))


async def test_an_invitation_goes_with_the_owner_who_made_it(
    telescopes: Telescopes,
    invitations: Invitations,
    telescope: Telescope,
    ada: Account,
    bob: Account,
    cyd: Account,
) -> None:
    await join(invitations, ada, telescope, bob, "operator")
    await telescopes.change_role(ada.id, telescope.id, bob.id, "owner")
    invitation = await invitations.invite(bob.id, telescope.id, "viewer")
    await telescopes.revoke_member(ada.id, telescope.id, bob.id)
    await refused(RefusalKind.NOT_FOUND, invitations.accept(invitation.code, cyd.id))
