"""Typed errors of the Seestar protocol layer."""

from __future__ import annotations


class SeestarError(Exception):
    """Base class of every error raised by the Seestar client."""


class CommandError(SeestarError):
    """The telescope answered a request with a non-zero code."""

    def __init__(self, method: str, code: int, text: str) -> None:
        super().__init__(f"{method} failed: {text} (code {code})")
        self.method = method
        self.code = code
        self.text = text


class ConnectionLostError(SeestarError):
    """The link dropped while the request was pending; it may or may not have run."""


class NotConnectedError(SeestarError):
    """The client has no link to the telescope right now."""


class CallTimeoutError(SeestarError):
    """No reply arrived in time; the outcome of the request is unknown."""


class ProtocolError(SeestarError):
    """A message from the telescope could not be understood."""


class AuthenticationError(SeestarError):
    """The login handshake is needed and failed, or no key was supplied."""


#: Firmware error codes seen in the wild, with their text.
KNOWN_CODES: dict[int, str] = {
    102: "unknown method",
    103: "invalid param",
    107: "expected object param",
    109: "unexpected param",
    203: "equipment is moving",
    207: "fail to operate",
    251: "solve failed",
}
