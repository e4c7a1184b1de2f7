"""Every error leaves the API as `application/problem+json` (RFC 9457)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from scopelink.schema.problems import PROBLEM_TYPE
from scopelink.schema.state import Problem, ProblemKind
from scopelink.services.command_service import CommandFailure
from scopelink.services.registry import UnknownTelescopeError
from scopelink.web.http_problems import install_http, problem_response

#: A failed command's HTTP status, by why it failed.
HTTP_STATUS: dict[ProblemKind, int] = {
    ProblemKind.FORBIDDEN: 403,
    ProblemKind.RATE_LIMITED: 429,
    ProblemKind.UNKNOWN_TELESCOPE: 404,
    ProblemKind.UNKNOWN_TARGET: 422,
    ProblemKind.INVALID: 422,
    ProblemKind.IDEMPOTENCY_CONFLICT: 409,
    ProblemKind.CONFLICT: 409,
    ProblemKind.NOT_IN_CONTROL: 409,
    ProblemKind.EXPIRED: 422,
    ProblemKind.TELESCOPE_BUSY: 409,
    ProblemKind.TELESCOPE_REFUSED: 422,
    ProblemKind.NOT_CONNECTED: 503,
    ProblemKind.TIMEOUT: 504,
    ProblemKind.CONNECTION_LOST: 502,
    ProblemKind.TELESCOPE_ERROR: 502,
}


def command_problem(failure: CommandFailure) -> Problem:
    """A failed command as a problem: the service's terms, with the HTTP status for its kind."""
    return Problem(
        type=PROBLEM_TYPE + failure.kind.value,
        title=failure.title,
        status=HTTP_STATUS[failure.kind],
        detail=failure.detail,
        telescope_code=failure.telescope_code,
        outcome=failure.outcome,
        errors=failure.errors,
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into problems."""
    install_http(app)

    @app.exception_handler(CommandFailure)
    async def _command(request: Request, exc: CommandFailure) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.kind is ProblemKind.RATE_LIMITED else None
        return problem_response(command_problem(exc), headers)

    @app.exception_handler(UnknownTelescopeError)
    async def _unknown(request: Request, exc: UnknownTelescopeError) -> JSONResponse:
        return problem_response(Problem(title="Unknown telescope", status=404, detail=str(exc)))
