"""Every failure the services and the negotiation can report has an HTTP status at the edge."""

from __future__ import annotations

from scopelink.schema.state import ProblemKind
from scopelink.services.command_service import CommandFailure
from scopelink.web.problems import HTTP_STATUS, command_problem
from scopelink.webrtc.negotiation import (
    NEGOTIATION_STATUS,
    NegotiationError,
    NegotiationProblem,
    negotiation_problem,
)


def test_every_command_failure_kind_maps_to_a_problem_with_its_status() -> None:
    assert set(HTTP_STATUS) == set(ProblemKind), "a new kind needs its HTTP status"
    for kind in ProblemKind:
        problem = command_problem(CommandFailure("T", "d", kind=kind, outcome="not_run"))
        assert 400 <= problem.status < 600 and problem.type.endswith("/" + kind.value)
        assert problem.outcome == "not_run"


def test_every_negotiation_refusal_maps_to_a_problem_with_its_status() -> None:
    assert set(NEGOTIATION_STATUS) == set(NegotiationProblem)
    for kind in NegotiationProblem:
        problem = negotiation_problem(NegotiationError(kind, "T", "d"))
        assert 400 <= problem.status < 600 and problem.type.endswith("/" + kind.value)
