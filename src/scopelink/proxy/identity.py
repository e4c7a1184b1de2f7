"""The proxy's identity and what pairing taught it, kept in its state directory:

- `identity.pem`: its Ed25519 private key, made on first run, 0600 (`scopelink.grants`).
- `pairing.json`: the broker it is paired with, the telescope id the broker gave it, and the
  broker's public key (to check grants offline), 0600. Absent until the proxy is paired.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scopelink.grants import load_or_create_private_key, load_public_key, public_key_pem

IDENTITY_FILE = "identity.pem"
PAIRING_FILE = "pairing.json"


@dataclass(frozen=True, slots=True)
class Pairing:
    """What the broker told the proxy when its owner typed the code."""

    broker_url: str
    telescope_id: str
    broker_key: str


class ProxyIdentity:
    """The proxy's key pair and pairing, in one directory only its owner may read."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.key: Ed25519PrivateKey = load_or_create_private_key(self.state_dir / IDENTITY_FILE)
        self.public_key = public_key_pem(self.key)

    @property
    def pairing_path(self) -> Path:
        return self.state_dir / PAIRING_FILE

    def pairing(self) -> Pairing | None:
        """The saved pairing, or None before the first one."""
        try:
            data = json.loads(self.pairing_path.read_text())
        except FileNotFoundError:
            return None
        pairing = Pairing(**{k: str(data[k]) for k in ("broker_url", "telescope_id", "broker_key")})
        load_public_key(pairing.broker_key)  # a damaged file fails here, with the reason
        return pairing

    def save_pairing(self, pairing: Pairing) -> None:
        partial = self.pairing_path.with_name(f".{PAIRING_FILE}.{secrets.token_hex(4)}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump(asdict(pairing), file, indent=2)
        os.replace(partial, self.pairing_path)

    def forget_pairing(self) -> None:
        self.pairing_path.unlink(missing_ok=True)
