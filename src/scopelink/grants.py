"""Grants: short-lived, signed permissions to use one telescope, and the Ed25519 keys behind them.

The broker signs a grant (a JWT, alg "EdDSA") naming an account, a telescope and a role; the
telescope-side proxy checks it offline with the broker's public key, accepts each grant once and
refuses it after its `exp`. Both sides keep their keys in PEM files that only their owner may read.

- `GrantSigner` (broker) and `GrantVerifier` (proxy), `Grant` and `GrantRefused`.
- Key files: `generate_private_key`, `save_private_key`, `load_private_key`,
  `load_or_create_private_key`, `public_key_pem`, `normalise_public_key_pem`.
- The proxy's proof of its identity on the broker link: `sign_challenge`, `verify_challenge`.

No web framework and nothing of the broker's storage: the proxy imports this module alone.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import math
import os
import secrets
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from scopelink.schema.commands import Role

__all__ = [
    "CLOCK_LEEWAY_S",
    "DEFAULT_TTL_S",
    "ISSUER",
    "MAX_GRANTS_IN_FLIGHT",
    "Grant",
    "GrantRefused",
    "GrantSigner",
    "GrantVerifier",
    "KeyFileError",
    "TelescopeRole",
    "generate_private_key",
    "load_or_create_private_key",
    "load_private_key",
    "load_public_key",
    "normalise_public_key_pem",
    "public_key_pem",
    "save_private_key",
    "sign_challenge",
    "verify_challenge",
]

ISSUER = "scopelink-broker"
ALGORITHM = "EdDSA"
#: A grant opens a session, it is not the session: a minute covers the browser's round trip.
DEFAULT_TTL_S = 60
#: Clocks of broker and proxy may disagree by this much (seconds) either way on `nbf` and `exp`.
CLOCK_LEEWAY_S = 5
#: Accepted grants a verifier remembers until they expire; beyond this it refuses new ones
#: rather than forget a live one (which would let it be replayed).
MAX_GRANTS_IN_FLIGHT = 100_000
#: Prefixed to every challenge the proxy signs, so its key's signatures prove nothing elsewhere.
CHALLENGE_CONTEXT = b"scopelink proxy link v1\x00"
_CLAIMS = ("iss", "sub", "name", "aud", "role", "jti", "iat", "nbf", "exp")


class TelescopeRole(StrEnum):
    """What an account is to one telescope: owners also manage its members."""

    OWNER = "owner"
    OPERATOR = "operator"
    VIEWER = "viewer"

    @property
    def session_role(self) -> Role:
        """The role of a live session on the telescope: owners command like operators."""
        return Role.VIEWER if self is TelescopeRole.VIEWER else Role.OPERATOR


@dataclass(frozen=True, slots=True)
class Grant:
    """The claims of a verified grant (JWT names in comments)."""

    account_id: str  # sub
    name: str  # the account's display name
    telescope_id: str  # aud
    role: TelescopeRole
    jti: str
    issued_at: int  # iat
    not_before: int  # nbf
    expires_at: int  # exp


class GrantRefused(Exception):
    """A grant the verifier will not accept, and why (words fit to show the user)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyFileError(Exception):
    """A key file that cannot be used as it is, and what to do about it."""


class GrantSigner:
    """Issues grants with the broker's private key."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key

    def issue(
        self,
        account_id: str,
        name: str,
        telescope_id: str,
        role: TelescopeRole | str,
        now: float | None = None,
        ttl_s: int = DEFAULT_TTL_S,
    ) -> str:
        """A signed grant for `account_id` (shown as `name`) as `role` on `telescope_id`."""
        if ttl_s <= 0:
            raise ValueError(f"a grant's lifetime must be positive, not {ttl_s} s")
        issued = int(time.time() if now is None else now)
        claims = {
            "iss": ISSUER,
            "sub": account_id,
            "name": name,
            "aud": telescope_id,
            "role": TelescopeRole(role).value,
            "jti": secrets.token_urlsafe(16),  # 128 random bits
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(ttl_s),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def public_key_pem(self) -> str:
        """The key a verifier needs, as PEM text."""
        return public_key_pem(self._key)


class GrantVerifier:
    """Checks grants for one telescope offline, each accepted once.

    Clock leeway: a grant is accepted from `CLOCK_LEEWAY_S` before its `nbf` until
    `CLOCK_LEEWAY_S` after its `exp`, and its id is remembered until then.
    """

    def __init__(
        self,
        public_key_pem: str | bytes,
        telescope_id: str,
        *,
        leeway_s: float = CLOCK_LEEWAY_S,
        max_in_flight: int = MAX_GRANTS_IN_FLIGHT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = load_public_key(public_key_pem)
        self.telescope_id = telescope_id
        self._leeway = leeway_s
        self._max = max_in_flight
        self._clock = clock
        self._seen: dict[str, float] = {}  # jti -> when it may be forgotten
        self._forget: list[tuple[float, str]] = []  # heap of the same, soonest first

    @property
    def in_flight(self) -> int:
        """Accepted grants still remembered."""
        return len(self._seen)

    def verify(self, token: str, now: float | None = None) -> Grant:
        """The grant in `token`, or `GrantRefused` with the reason."""
        now = self._clock() if now is None else now
        claims = self._decode(token)
        grant = _grant_from(claims)
        if grant.telescope_id != self.telescope_id:
            raise GrantRefused(
                f"wrong telescope: this grant is for {grant.telescope_id!r}, "
                f"this is {self.telescope_id!r}"
            )
        if now < grant.not_before - self._leeway:
            raise GrantRefused(
                f"not yet valid: valid in {grant.not_before - now:.0f} s "
                "(is this machine's clock right?)"
            )
        if now >= grant.expires_at + self._leeway:
            raise GrantRefused(f"expired {now - grant.expires_at:.0f} s ago; ask for a new grant")
        self._remember(grant, now)
        return grant

    def _decode(self, token: str) -> dict[str, object]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as error:
            raise GrantRefused(f"malformed grant: {error}") from None
        if header.get("alg") != ALGORITHM:
            raise GrantRefused(f"malformed grant: signed with {header.get('alg')!r}, not EdDSA")
        try:
            return jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                # Times and audience are checked by `verify`, to say exactly what is wrong.
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "require": list(_CLAIMS),
                },
            )
        except jwt.InvalidSignatureError:
            raise GrantRefused("bad signature: this grant was not signed by our broker") from None
        except jwt.MissingRequiredClaimError as error:
            raise GrantRefused(f"malformed grant: no {error.claim!r} claim") from None
        except jwt.InvalidTokenError as error:
            raise GrantRefused(f"malformed grant: {error}") from None

    def _remember(self, grant: Grant, now: float) -> None:
        while self._forget and self._forget[0][0] <= now:
            _, jti = heapq.heappop(self._forget)
            self._seen.pop(jti, None)
        if grant.jti in self._seen:
            raise GrantRefused("replayed: this grant was already used; ask for a new one")
        if len(self._seen) >= self._max:
            raise GrantRefused("too many grants in flight; try again in a minute")
        forget_at = grant.expires_at + self._leeway
        self._seen[grant.jti] = forget_at
        heapq.heappush(self._forget, (forget_at, grant.jti))


def _grant_from(claims: dict[str, object]) -> Grant:
    if claims["iss"] != ISSUER:
        raise GrantRefused(f"malformed grant: issued by {claims['iss']!r}, not {ISSUER!r}")
    role = _text(claims, "role")
    try:
        telescope_role = TelescopeRole(role)
    except ValueError:
        raise GrantRefused(f"unknown role {role!r} in grant") from None
    return Grant(
        account_id=_text(claims, "sub"),
        name=_text(claims, "name"),
        telescope_id=_text(claims, "aud"),
        role=telescope_role,
        jti=_text(claims, "jti"),
        issued_at=_time(claims, "iat"),
        not_before=_time(claims, "nbf"),
        expires_at=_time(claims, "exp"),
    )


def _text(claims: dict[str, object], key: str) -> str:
    value = claims[key]
    if not isinstance(value, str) or not value:
        raise GrantRefused(f"malformed grant: {key!r} is not a text")
    return value


def _time(claims: dict[str, object], key: str) -> int:
    value = claims[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GrantRefused(f"malformed grant: {key!r} is not a time")
    return int(value)


# --- keys -----------------------------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    """A new Ed25519 private key (broker signing key or proxy identity)."""
    return Ed25519PrivateKey.generate()


def save_private_key(key: Ed25519PrivateKey, path: str | Path) -> None:
    """Write `key` as PEM to `path`, readable by its owner only (0600), creating its directory
    (0700); the file appears whole or not at all."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.partial")
    # Created 0600 from the start: a chmod after writing would leave a readable moment.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(pem)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The Ed25519 key in `path`; `KeyFileError` if the file is readable by group or others.

    Refused, not fixed: a key others could read may already be copied, so whoever runs the
    server decides whether to tighten it (chmod 600) or make a new key.
    """
    path = Path(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} is open to group or others (mode {mode:04o}); "
            f"run `chmod 600 {path}`, or delete it to make a new key if it may have leaked"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError as error:
        raise KeyFileError(f"key file {path} holds no readable PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"key file {path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def load_or_create_private_key(path: str | Path) -> Ed25519PrivateKey:
    """The key in `path`, made and saved there first if there is no such file."""
    path = Path(path)
    if not path.exists():
        save_private_key(generate_private_key(), path)
    return load_private_key(path)


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public half of `key` as PEM text (SubjectPublicKeyInfo)."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """The Ed25519 public key in PEM text; `ValueError` saying why if it is not one."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as error:
        raise ValueError(f"not a PEM public key: {error}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key but a {type(key).__name__}")
    return key


def normalise_public_key_pem(pem: str | bytes) -> str:
    """One spelling of a public key (line endings, spacing), so equal keys compare equal."""
    return public_key_pem(load_public_key(pem))


def sign_challenge(private_key: Ed25519PrivateKey, challenge: bytes) -> str:
    """The proxy's signature of a broker challenge, urlsafe base64 without padding."""
    signature = private_key.sign(CHALLENGE_CONTEXT + challenge)
    return base64.urlsafe_b64encode(signature).rstrip(b"=").decode("ascii")


def verify_challenge(public_key_pem: str | bytes, challenge: bytes, signature: str) -> bool:
    """Whether `signature` is the holder of `public_key_pem` signing `challenge`.

    False for any signature that is not that (garbled included); `ValueError` for a key that
    is not an Ed25519 PEM public key.
    """
    key = load_public_key(public_key_pem)
    try:
        raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        key.verify(raw, CHALLENGE_CONTEXT + challenge)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True
