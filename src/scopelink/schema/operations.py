"""Long operations as transports show them, and their state machine."""

from __future__ import annotations

import time
from enum import StrEnum

from pydantic import BaseModel, Field


class OperationState(StrEnum):
    START = "start"
    WORKING = "working"
    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"


TERMINAL = frozenset({OperationState.COMPLETE, OperationState.FAIL, OperationState.CANCEL})

TRANSITIONS: dict[OperationState, frozenset[OperationState]] = {
    OperationState.START: frozenset({OperationState.WORKING, *TERMINAL}),
    OperationState.WORKING: frozenset({OperationState.WORKING, *TERMINAL}),
    OperationState.COMPLETE: frozenset(),
    OperationState.FAIL: frozenset(),
    OperationState.CANCEL: frozenset(),
}


class OperationKind(StrEnum):
    GOTO = "goto"
    PARK = "park"
    FOCUS = "focus"
    AUTOFOCUS = "autofocus"
    STACK = "stack"
    MOVE = "move"


#: Operations that move the mount: only one at a time.
MOTION_KINDS = frozenset({OperationKind.GOTO, OperationKind.PARK, OperationKind.MOVE})
#: Operations that move the focuser: only one at a time.
FOCUS_KINDS = frozenset({OperationKind.FOCUS, OperationKind.AUTOFOCUS})


class Operation(BaseModel):
    """A long operation as transports show it."""

    id: str
    telescope_id: str
    kind: OperationKind
    state: OperationState = OperationState.START
    #: 0..1 where the telescope tells us how far it is, else None.
    progress: float | None = Field(default=None, ge=0.0, le=1.0)
    #: A short human-readable status, e.g. "slewing, 12.3° to go".
    message: str = ""
    #: Why it failed or was cancelled.
    error: str | None = None
    target: str | None = None
    started_at: float = Field(default_factory=time.time)
    ended_at: float | None = None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL
