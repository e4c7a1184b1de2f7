"""Firmware facts of the simulated telescope: profiles by version, error codes, limits."""

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

VIEW_MODES = frozenset({"star", "moon", "sun", "planet", "scenery", "solar_sys"})
FOCUSER_MAX_STEP = 2600
FOCUSER_STEPS_PER_S = 400.0
WHEEL_NAMES = {0: "Dark", 1: "IRCut", 2: "LP"}
LOW_BATTERY_PERCENT = 10.0


class FirmwareError(Exception):
    """A request the firmware refuses: becomes `{"error": text, "code": code}`."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{text} ({code})")
        self.code = code
        self.text = text


MOVING = FirmwareError(203, "equipment is moving")
FAIL = FirmwareError(207, "fail to operate")
UNKNOWN_METHOD = FirmwareError(102, "unknown method")
#: Not seen in captures; the simulator's answer to params of the wrong shape.
BAD_PARAM = FirmwareError(103, "invalid param")


@dataclass(slots=True)
class ConnectionInfo:
    """Per-connection state the firmware keeps (login is per TCP connection)."""

    verified: bool = False
    challenge: str | None = None
