"""ICE servers for browsers and aiortc: no public STUN by default, coturn REST credentials."""

from __future__ import annotations

import base64
import hashlib

import pytest
from aiortc import RTCIceServer

from scopelink.webrtc.ice import IceSettings, ice_servers, to_aiortc, turn_credentials

NOW = 1_700_000_000.4


def _hmac_sha1(key: bytes, message: bytes) -> bytes:
    """RFC 2104 by hand, so the test does not trust the module's own `hmac` call."""
    block = 64
    key = key.ljust(block, b"\0")
    inner = hashlib.sha1(bytes(k ^ 0x36 for k in key) + message).digest()
    return hashlib.sha1(bytes(k ^ 0x5C for k in key) + inner).digest()


def test_no_servers_by_default_and_none_for_aiortc() -> None:
    assert ice_servers(IceSettings(), "viewer-1", NOW) == []
    # An empty list, not None: None would make aiortc use Google's STUN server.
    assert to_aiortc([]) == []


def test_turn_credential_matches_coturn_rest_known_answer() -> None:
    settings = IceSettings(
        stun_urls=["stun:scope.lan:3478"],
        turn_urls=["turn:scope.lan:3478?transport=udp"],
        turn_secret="coturn-secret",
        turn_ttl_s=3600,
    )
    stun, turn = ice_servers(settings, "viewer-1", NOW)
    assert stun == {"urls": ["stun:scope.lan:3478"]}
    assert turn["username"] == "1700003600:viewer-1"  # expiry = now + ttl, then the user
    # `openssl dgst -sha1 -hmac coturn-secret -binary | base64` of the username:
    assert turn["credential"] == "WIWGdL3Rth0a6VbIJ7joJIpVPIY="
    by_hand = base64.b64encode(_hmac_sha1(b"coturn-secret", b"1700003600:viewer-1")).decode()
    assert turn["credential"] == by_hand
    assert turn_credentials("coturn-secret", "viewer-1", 1700003600) == (
        turn["username"],
        turn["credential"],
    )


def test_static_turn_user_without_secret_and_misconfiguration_is_refused() -> None:
    settings = IceSettings(turn_urls=["turn:t:3478"], turn_username="u", turn_credential="p")
    assert ice_servers(settings, "x", NOW) == [
        {"urls": ["turn:t:3478"], "username": "u", "credential": "p"}
    ]
    with pytest.raises(ValueError, match="TURN"):
        ice_servers(IceSettings(turn_urls=["turn:t:3478"]), "x", NOW)


def test_aiortc_servers_carry_the_same_credentials() -> None:
    settings = IceSettings(turn_urls=["turn:t:3478"], turn_secret="s")
    (server,) = to_aiortc(ice_servers(settings, "scopelink-server", NOW))
    assert isinstance(server, RTCIceServer)
    assert server.urls == ["turn:t:3478"]
    assert server.username is not None and server.username.endswith(":scopelink-server")
    assert server.credential is not None
