"""Grants and keys, as the broker signs and a proxy checks them offline (`scopelink.grants`)."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scopelink.grants import (
    CLOCK_LEEWAY_S,
    ISSUER,
    GrantRefused,
    GrantSigner,
    GrantVerifier,
    KeyFileError,
    TelescopeRole,
    generate_private_key,
    load_or_create_private_key,
    load_private_key,
    normalise_public_key_pem,
    public_key_pem,
    save_private_key,
    sign_challenge,
    verify_challenge,
)
from scopelink.schema.commands import Role

NOW = 1_700_000_000.0
TELESCOPE = "tel_0123456789abcdef"


@pytest.fixture
def signer() -> GrantSigner:
    return GrantSigner(generate_private_key())


@pytest.fixture
def verifier(signer: GrantSigner) -> GrantVerifier:
    return GrantVerifier(signer.public_key_pem(), TELESCOPE)


def refusal(verifier: GrantVerifier, token: str, now: float = NOW) -> str:
    with pytest.raises(GrantRefused) as refused:
        verifier.verify(token, now=now)
    return refused.value.reason


def test_a_grant_is_accepted_once_with_its_claims(
    signer: GrantSigner, verifier: GrantVerifier
) -> None:
    token = signer.issue("acct_1", "Ada", TELESCOPE, "operator", now=NOW)
    grant = verifier.verify(token, now=NOW + 1)
    assert (grant.account_id, grant.name, grant.telescope_id) == ("acct_1", "Ada", TELESCOPE)
    assert grant.role is TelescopeRole.OPERATOR
    assert (grant.issued_at, grant.not_before, grant.expires_at) == (NOW, NOW, NOW + 60)
    assert len(grant.jti) == 22  # 128 bits, urlsafe base64 without padding
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["aud"] == TELESCOPE and claims["sub"] == "acct_1"
    assert jwt.get_unverified_header(token)["alg"] == "EdDSA"


def test_a_replayed_grant_is_refused(signer: GrantSigner, verifier: GrantVerifier) -> None:
    token = signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW)
    verifier.verify(token, now=NOW)
    assert refusal(verifier, token, NOW + 2).startswith("replayed")
    # Another grant for the same account and role is a new grant.
    verifier.verify(signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW), now=NOW)


def test_an_expired_grant_is_refused_saying_by_how_long(
    signer: GrantSigner, verifier: GrantVerifier
) -> None:
    token = signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW, ttl_s=30)
    assert refusal(verifier, token, NOW + 30 + 42) == "expired 42 s ago; ask for a new grant"
    # Within the clock leeway after `exp` it still counts.
    verifier.verify(token, now=NOW + 30 + CLOCK_LEEWAY_S - 0.5)


def test_a_grant_from_the_future_is_not_yet_valid_beyond_the_leeway(
    signer: GrantSigner, verifier: GrantVerifier
) -> None:
    token = signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW + 20)
    assert refusal(verifier, token, NOW).startswith("not yet valid: valid in 20 s")
    soon = signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW + CLOCK_LEEWAY_S - 1)
    verifier.verify(soon, now=NOW)


def test_a_grant_for_another_telescope_is_refused(
    signer: GrantSigner, verifier: GrantVerifier
) -> None:
    token = signer.issue("acct_1", "Ada", "tel_other", "owner", now=NOW)
    assert refusal(verifier, token).startswith("wrong telescope: this grant is for 'tel_other'")


def test_a_grant_signed_with_another_key_is_refused(verifier: GrantVerifier) -> None:
    impostor = GrantSigner(generate_private_key())
    token = impostor.issue("acct_1", "Ada", TELESCOPE, "owner", now=NOW)
    assert refusal(verifier, token).startswith("bad signature")


def test_a_grant_changed_after_signing_is_refused(
    signer: GrantSigner, verifier: GrantVerifier
) -> None:
    header, payload, signature = signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW).split(
        "."
    )
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "owner"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert refusal(verifier, f"{header}.{forged}.{signature}").startswith("bad signature")


def test_garbled_and_unsigned_grants_are_malformed(verifier: GrantVerifier) -> None:
    assert refusal(verifier, "not a grant").startswith("malformed grant")
    assert refusal(verifier, "").startswith("malformed grant")
    unsigned = jwt.encode({"sub": "acct_1"}, key=None, algorithm="none")
    assert refusal(verifier, unsigned) == "malformed grant: signed with 'none', not EdDSA"
    shared_secret = jwt.encode({"sub": "acct_1"}, "secret-of-32-bytes-or-more-123456", "HS256")
    assert "not EdDSA" in refusal(verifier, shared_secret)


def claims(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": ISSUER,
        "sub": "acct_1",
        "name": "Ada",
        "aud": TELESCOPE,
        "role": "viewer",
        "jti": "j" * 22,
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 60,
    }
    base.update(changes)
    return {key: value for key, value in base.items() if value is not None}


def test_a_grant_missing_a_claim_or_from_another_issuer_is_malformed() -> None:
    key = generate_private_key()
    verifier = GrantVerifier(public_key_pem(key), TELESCOPE)
    no_jti = jwt.encode(claims(jti=None), key, algorithm="EdDSA")
    assert refusal(verifier, no_jti) == "malformed grant: no 'jti' claim"
    elsewhere = jwt.encode(claims(iss="someone-else"), key, algorithm="EdDSA")
    assert refusal(verifier, elsewhere).startswith("malformed grant: issued by 'someone-else'")
    odd_time = jwt.encode(claims(exp="soon"), key, algorithm="EdDSA")
    assert "malformed grant" in refusal(verifier, odd_time)


def test_a_grant_with_an_unknown_role_is_refused() -> None:
    key = generate_private_key()
    verifier = GrantVerifier(public_key_pem(key), TELESCOPE)
    token = jwt.encode(claims(role="admin"), key, algorithm="EdDSA")
    assert refusal(verifier, token) == "unknown role 'admin' in grant"


def test_the_verifier_forgets_a_grant_once_it_has_expired(
    signer: GrantSigner, verifier: GrantVerifier
) -> None:
    for _ in range(3):
        verifier.verify(signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW), now=NOW)
    assert verifier.in_flight == 3
    later = NOW + 60 + CLOCK_LEEWAY_S
    verifier.verify(signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=later), now=later)
    assert verifier.in_flight == 1


def test_beyond_the_cap_of_grants_in_flight_new_ones_are_refused(signer: GrantSigner) -> None:
    verifier = GrantVerifier(signer.public_key_pem(), TELESCOPE, max_in_flight=2)
    for _ in range(2):
        verifier.verify(signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW), now=NOW)
    third = signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW)
    assert refusal(verifier, third).startswith("too many grants in flight")
    # Once the first two are past their expiry (and the leeway) there is room again.
    later = NOW + 60 + CLOCK_LEEWAY_S
    verifier.verify(signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=later), now=later)


def test_a_lifetime_is_configurable_and_must_be_positive(signer: GrantSigner) -> None:
    grant = GrantVerifier(signer.public_key_pem(), TELESCOPE).verify(
        signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW, ttl_s=300), now=NOW
    )
    assert grant.expires_at == NOW + 300
    with pytest.raises(ValueError, match="positive"):
        signer.issue("acct_1", "Ada", TELESCOPE, "viewer", now=NOW, ttl_s=0)


def test_owners_and_operators_command_a_session_and_viewers_watch() -> None:
    assert TelescopeRole.OWNER.session_role is Role.OPERATOR
    assert TelescopeRole.OPERATOR.session_role is Role.OPERATOR
    assert TelescopeRole.VIEWER.session_role is Role.VIEWER


# --- keys -----------------------------------------------------------------------------------


def test_a_key_file_is_written_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "nested" / "broker.pem"
    key = generate_private_key()
    save_private_key(key, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert public_key_pem(load_private_key(path)) == public_key_pem(key)
    assert [p.name for p in path.parent.iterdir()] == ["broker.pem"]  # no partial file left


def test_a_key_file_others_can_read_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "broker.pem"
    save_private_key(generate_private_key(), path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match=r"mode 0644.*chmod 600"):
        load_private_key(path)
    os.chmod(path, 0o600)
    load_private_key(path)


def test_a_key_file_holding_another_kind_of_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rsa.pem"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not an Ed25519 key"):
        load_private_key(path)
    (tmp_path / "junk.pem").write_text("junk")
    (tmp_path / "junk.pem").chmod(0o600)
    with pytest.raises(KeyFileError, match="no readable PEM"):
        load_private_key(tmp_path / "junk.pem")


def test_load_or_create_makes_a_key_once_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "proxy" / "identity.pem"
    first = load_or_create_private_key(path)
    again = load_or_create_private_key(path)
    assert public_key_pem(first) == public_key_pem(again)


def test_a_challenge_signed_by_the_proxy_verifies_and_nothing_else_does() -> None:
    proxy = generate_private_key()
    pem = public_key_pem(proxy)
    challenge = os.urandom(32)
    signature = sign_challenge(proxy, challenge)
    assert verify_challenge(pem, challenge, signature)
    assert not verify_challenge(pem, os.urandom(32), signature)
    assert not verify_challenge(public_key_pem(generate_private_key()), challenge, signature)
    assert not verify_challenge(pem, challenge, "garbled!")
    assert not verify_challenge(pem, challenge, "")
    # A bare signature of the challenge (without our context) is not a link proof.
    bare = base64.urlsafe_b64encode(proxy.sign(challenge)).rstrip(b"=").decode()
    assert not verify_challenge(pem, challenge, bare)
    with pytest.raises(ValueError, match="not a PEM public key"):
        verify_challenge("nonsense", challenge, signature)


def test_a_public_key_has_one_spelling() -> None:
    pem = public_key_pem(generate_private_key())
    assert normalise_public_key_pem(pem.replace("\n", "\r\n")) == pem
    assert normalise_public_key_pem(pem.encode()) == pem
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        rsa_pem = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        normalise_public_key_pem(rsa_pem)
