"""Long operations (goto, park, focus, autofocus, stacking) as explicit state machines.

An operation starts when its command is accepted and is driven to its end by the telescope's
events; transports show its state and progress. The allowed transitions are listed once, here.
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable

from scopelink.schema.operations import (
    TERMINAL,
    TRANSITIONS,
    Operation,
    OperationKind,
    OperationState,
)


class IllegalTransitionError(RuntimeError):
    """A bug: an operation was moved along a transition the state machine does not allow."""


Listener = Callable[[Operation], None]


class OperationTracker:
    """The operations of one telescope: the running ones and a bounded history."""

    def __init__(self, telescope_id: str, *, history: int = 50) -> None:
        self.telescope_id = telescope_id
        self._ids = itertools.count(1)
        self._ops: OrderedDict[str, Operation] = OrderedDict()
        self._history = history
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def start(
        self, kind: OperationKind, *, target: str | None = None, message: str = ""
    ) -> Operation:
        op = Operation(
            id=f"{self.telescope_id}-{next(self._ids)}",
            telescope_id=self.telescope_id,
            kind=kind,
            target=target,
            message=message,
        )
        self._ops[op.id] = op
        while len(self._ops) > self._history:
            oldest = next(iter(self._ops))
            if not self._ops[oldest].done:
                break
            del self._ops[oldest]
        self._notify(op)
        return op

    def update(
        self,
        op: Operation,
        state: OperationState,
        *,
        progress: float | None = None,
        message: str | None = None,
        error: str | None = None,
    ) -> None:
        """Move `op` to `state`; updates to a finished operation are ignored (late events)."""
        if op.done:
            return
        if state not in TRANSITIONS[op.state]:
            raise IllegalTransitionError(f"operation {op.id}: {op.state} -> {state}")
        op.state = state
        if progress is not None:
            op.progress = min(1.0, max(0.0, progress))
        if message is not None:
            op.message = message
        if error is not None:
            op.error = error
        if state in TERMINAL:
            op.ended_at = time.time()
            if state is OperationState.COMPLETE:
                op.progress = 1.0
        self._notify(op)

    def get(self, op_id: str) -> Operation | None:
        return self._ops.get(op_id)

    def running(self, kinds: frozenset[OperationKind] | None = None) -> list[Operation]:
        return [o for o in self._ops.values() if not o.done and (kinds is None or o.kind in kinds)]

    def recent(self) -> list[Operation]:
        return list(self._ops.values())

    def fail_all(self, reason: str) -> None:
        """The telescope is gone: every running operation ends with `reason`."""
        for op in self.running():
            self.update(op, OperationState.FAIL, error=reason, message=reason)

    def _notify(self, op: Operation) -> None:
        for listener in list(self._listeners):
            listener(op)
