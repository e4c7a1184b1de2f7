"""ICE servers: what the browser and aiortc are told to use, with time-limited TURN credentials.

No public STUN server is configured by default: on a LAN host candidates suffice, and a
telescope app should not call out to a third party unasked. TURN credentials follow the TURN
REST convention that coturn's `use-auth-secret` / `static-auth-secret` checks: the username is
`"<expiry unix time>:<user>"` and the password is `base64(HMAC-SHA1(secret, username))`, so the
TURN server needs no user database and a leaked credential expires on its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiortc import RTCIceServer


#: How long a TURN credential handed out is valid, by default (coturn's usual choice is a day).
DEFAULT_TURN_TTL_S = 3600


@dataclass(slots=True)
class IceSettings:
    """STUN and TURN servers for browsers and for aiortc; empty means host candidates only."""

    #: e.g. `["stun:stun.example.org:3478"]`; empty by default (no public STUN).
    stun_urls: list[str] = field(default_factory=list)
    #: e.g. `["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"]`.
    turn_urls: list[str] = field(default_factory=list)
    #: coturn's `static-auth-secret`: credentials are minted per caller and expire.
    turn_secret: str | None = None
    turn_ttl_s: int = DEFAULT_TURN_TTL_S
    #: A fixed TURN user (coturn `lt-cred-mech` with `user=`), used only without a secret.
    turn_username: str | None = None
    turn_credential: str | None = None


def turn_credentials(secret: str, user: str, expires: int) -> tuple[str, str]:
    """The TURN REST (username, password) pair valid until `expires` (unix seconds)."""
    username = f"{expires}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def ice_servers(settings: IceSettings, user: str, now: float) -> list[dict[str, Any]]:
    """Browser-style `RTCIceServer` dicts (`urls`, `username`, `credential`) for `user` at `now`.

    `user` ends up in the TURN username (and so in the TURN server's logs): pass a non-secret id.
    """
    servers: list[dict[str, Any]] = []
    if settings.stun_urls:
        servers.append({"urls": list(settings.stun_urls)})
    if settings.turn_urls:
        if settings.turn_secret:
            expires = int(now) + int(settings.turn_ttl_s)
            username, credential = turn_credentials(settings.turn_secret, user, expires)
        elif settings.turn_username is not None and settings.turn_credential is not None:
            username, credential = settings.turn_username, settings.turn_credential
        else:
            raise ValueError("TURN servers are configured without a secret or a static user")
        servers.append(
            {"urls": list(settings.turn_urls), "username": username, "credential": credential}
        )
    return servers


def to_aiortc(servers: list[dict[str, Any]]) -> list[RTCIceServer]:
    """The same servers for `RTCConfiguration(iceServers=...)`.

    An empty list must stay empty: aiortc falls back to Google's public STUN server only when
    `iceServers` is None. aiortc uses the first STUN and the first TURN URL it finds.
    """
    from aiortc import RTCIceServer  # here: the broker mints credentials and never loads aiortc

    return [
        RTCIceServer(
            urls=server["urls"],
            username=server.get("username"),
            credential=server.get("credential"),
        )
        for server in servers
    ]
