"""The broker's REST bodies (docs/remote.md, "The broker's API"), defined once: `broker/web.py`
takes and returns these, and the browser's types are generated from them
(`schema/export.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

#: A role on a telescope, as the broker keeps it (an owner commands as an operator, and also
#: manages the telescope's members).
TelescopeRoleName = Literal["owner", "operator", "viewer"]
#: The roles an invitation can give.
InvitedRole = Literal["operator", "viewer"]


def _absent(value: object) -> bool:
    return value is None


class BrokerAbout(BaseModel):
    """`GET /api/broker`: what this broker is (a 404 on `scopelink serve`)."""

    broker: Literal[True] = True
    instance: str
    #: Anyone may create an account.
    open_signup: bool
    #: The key its grants are signed with (PEM).
    public_key: str


class Credentials(BaseModel):
    """`POST /api/login` and `POST /api/accounts` bodies."""

    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class BrokerAccountInfo(BaseModel):
    id: str
    name: str


class SignedIn(BaseModel):
    """`POST /api/login` and `POST /api/accounts` answers (the session cookie comes with them)."""

    account: BrokerAccountInfo


class TokenRequest(BaseModel):
    """`POST /api/tokens` body: an API token for scripts."""

    label: str = Field(min_length=1, max_length=100)
    ttl_s: float | None = Field(default=None, gt=0)


class IssuedApiToken(BaseModel):
    """`POST /api/tokens` answer: the token is shown this once."""

    token: str
    id: str
    label: str
    #: Epoch seconds; null: until revoked.
    expires: float | None


class RemoteTelescope(BaseModel):
    """A telescope the account may use, with its role and whether its proxy is linked now."""

    id: str
    name: str
    role: TelescopeRoleName
    online: bool
    #: The proxy's own page on its network (an mDNS name), as the proxy told the broker; null
    #: when offline or untold.
    lan_url: str | None = None


class Me(BaseModel):
    """`GET /api/me` (401 when signed out)."""

    account: BrokerAccountInfo
    telescopes: list[RemoteTelescope]


class ClaimRequest(BaseModel):
    """`POST /api/pairings/claim` body: the code the proxy shows, and a name for its telescope."""

    code: str = Field(max_length=32)
    name: str = Field(max_length=64)


class Membership(BaseModel):
    """`POST /api/pairings/claim` and `POST /api/invitations/accept` answers."""

    id: str
    name: str
    role: TelescopeRoleName


class InvitationRequest(BaseModel):
    """`POST /api/telescopes/{id}/invitations` body."""

    role: InvitedRole


class Invitation(BaseModel):
    """`POST /api/telescopes/{id}/invitations` answer: the code is shown once, used once."""

    code: str
    role: InvitedRole
    #: Epoch seconds.
    expires: float


class AcceptRequest(BaseModel):
    """`POST /api/invitations/accept` body."""

    code: str = Field(max_length=128)


class Member(BaseModel):
    """A member of a telescope, as its owners see them."""

    account_id: str
    name: str
    role: TelescopeRoleName
    #: Epoch seconds.
    since: float


class ConnectionRecord(BaseModel):
    """A browser's signaling conversation with the telescope, as its owners see it."""

    account: str
    #: Epoch seconds.
    opened: float
    ended: float | None
    #: Why it ended ("left", "no answer", "access revoked"…); null while open.
    outcome: str | None


class TelescopeDetails(RemoteTelescope):
    """`GET /api/telescopes/{id}`: `members` and `connections` for an owner only."""

    members: list[Member] | None = Field(default=None, exclude_if=_absent)
    connections: list[ConnectionRecord] | None = Field(default=None, exclude_if=_absent)


class GrantAnswer(BaseModel):
    """`POST /api/telescopes/{id}/grant`: a grant to present to the telescope's proxy directly
    (its page on its own network), and ICE servers with fresh TURN credentials."""

    grant: str
    #: Epoch seconds.
    expires: float
    iceServers: list[dict[str, object]]
