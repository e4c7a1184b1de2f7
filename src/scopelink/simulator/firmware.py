"""Firmware profiles of the simulated telescope: what changes between firmware versions."""

from __future__ import annotations

from dataclasses import dataclass

from scopelink.seestar import verify


@dataclass(frozen=True, slots=True)
class FirmwareProfile:
    """One firmware generation's observable behaviour."""

    name: str
    version: str

    @property
    def version_int(self) -> int:
        return verify.firmware_int(self.version)

    @property
    def login_available(self) -> bool:
        return self.version_int >= verify.LOGIN_AVAILABLE_FIRMWARE

    @property
    def login_required(self) -> bool:
        """Requests other than the login trio are ignored until the handshake succeeds."""
        return self.version_int >= verify.LOGIN_REQUIRED_FIRMWARE

    @property
    def rejects_object_verify(self) -> bool:
        """`{"verify": true}` in object params gets 109, `[{...}, "verify"]` gets 107."""
        return self.version_int >= verify.OBJECT_VERIFY_FORBIDDEN_FIRMWARE


PROFILES: dict[str, FirmwareProfile] = {
    p.name: p
    for p in (
        # The firmware of the 2024 capture: no "verify" marker, no login.
        FirmwareProfile("legacy", "2.25"),
        # 7.x: "verify" marker, object params unchanged, login available but optional.
        FirmwareProfile("v7", "7.18"),
        # 7.32 and later: nothing but the login trio is answered until verified.
        FirmwareProfile("secure", "7.32"),
        # A current firmware: login required, stacked images arrive as JPEG.
        FirmwareProfile("current", "8.89"),
    )
}

DEFAULT_PROFILE = "v7"
