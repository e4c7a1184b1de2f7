"""Firmware-dependent request rules: the `"verify"` marker and the login handshake.

Firmware is identified by `firmware_ver_int` = 2000 + major*100 + minor ("7.32" -> 2732).
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from scopelink.seestar.errors import AuthenticationError
from scopelink.seestar.messages import AUTH_METHODS

#: Above this firmware the "verify" marker is added to params.
VERIFY_MIN_FIRMWARE = 2582
#: From this firmware, object params must not carry `"verify": true` (code 109).
OBJECT_VERIFY_FORBIDDEN_FIRMWARE = 2706
#: From this firmware the login handshake exists.
LOGIN_AVAILABLE_FIRMWARE = 2718
#: From this firmware requests other than the login trio are ignored until verified.
LOGIN_REQUIRED_FIRMWARE = 2732


def firmware_int(version: str) -> int:
    """`"7.32"` -> 2732."""
    major, _, minor = version.partition(".")
    return 2000 + int(major) * 100 + int(minor or 0)


def needs_verify(firmware: int | None) -> bool:
    """Unknown firmware (None or 0) is treated as new, as the official app does."""
    return not firmware or firmware > VERIFY_MIN_FIRMWARE


def add_verify(method: str, params: Any, firmware: int | None) -> tuple[bool, Any]:
    """Return `(has_params, params)` with the verify marker applied for `firmware`.

    Pass `None` for "no params".
    """
    if method in AUTH_METHODS or not needs_verify(firmware):
        return params is not None, params
    if params is None:
        return True, ["verify"]
    if isinstance(params, list):
        if params and params[-1] == "verify":
            return True, params
        if method == "set_wheel_position":
            return True, [*params, "verify"]
        return True, [params, "verify"]
    if isinstance(params, dict):
        if firmware and firmware >= OBJECT_VERIFY_FORBIDDEN_FIRMWARE:
            return True, params
        return True, {**params, "verify": True}
    return True, params


def strip_verify(params: Any) -> tuple[Any, bool]:
    """Inverse of add_verify, for the simulator: `(params, had_marker)` accepting every variant."""
    if params == "verify" or params == ["verify"]:
        return None, True
    if isinstance(params, list) and params and params[-1] == "verify":
        rest = params[:-1]
        if len(rest) == 1 and isinstance(rest[0], list | dict):
            return rest[0], True
        return rest, True
    if isinstance(params, dict) and "verify" in params:
        return {k: v for k, v in params.items() if k != "verify"}, True
    return params, False


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """Load the user's RSA private key (PEM, unencrypted)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise AuthenticationError(f"cannot read the login key: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthenticationError("the login key must be an RSA private key")
    return key


def sign_challenge(key: rsa.RSAPrivateKey, challenge: str) -> str:
    """SHA1withRSA (PKCS#1 v1.5) over the challenge's UTF-8 bytes, base64-encoded."""
    signature = key.sign(challenge.encode(), padding.PKCS1v15(), hashes.SHA1())
    return base64.b64encode(signature).decode()


def check_signature(public_key: rsa.RSAPublicKey, challenge: str, sign_b64: str) -> bool:
    """The telescope's side of the handshake."""
    try:
        signature = base64.b64decode(sign_b64, validate=True)
        public_key.verify(signature, challenge.encode(), padding.PKCS1v15(), hashes.SHA1())
    except Exception:  # any failure means "not verified"
        return False
    return True


def generate_key_pem() -> bytes:
    """A fresh 2048-bit RSA key in PKCS#8 PEM, for the simulator and tests."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
