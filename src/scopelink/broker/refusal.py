"""`BrokerRefusal`: why the broker would not do what was asked, as a kind a transport can map
(to an HTTP status, say) and a reason fit to show the user. It never carries a secret."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["BrokerRefusal", "RefusalKind"]


class RefusalKind(StrEnum):
    """What kind of no it is."""

    INVALID = "invalid"  # the request itself is wrong (a short password, a bad code format)
    CONFLICT = "conflict"  # it clashes with what exists (a taken name, a used code)
    UNAUTHORIZED = "unauthorized"  # who is asking is not established (wrong password, token)
    FORBIDDEN = "forbidden"  # who is asking may not do this (a viewer inviting)
    NOT_FOUND = "not_found"
    EXPIRED = "expired"  # it existed but its time is over (a code, a token)
    RATE_LIMITED = "rate_limited"  # too many tries; wait or start again


class BrokerRefusal(Exception):
    """A refused broker operation: its `kind` and a human `detail`."""

    def __init__(self, kind: RefusalKind, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
