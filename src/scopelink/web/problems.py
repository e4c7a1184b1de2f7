"""Every error leaves the API as `application/problem+json` (RFC 9457)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from scopelink.schema.problems import PROBLEM_TYPE
from scopelink.schema.state import Problem, ProblemKind
from scopelink.services.command_service import CommandFailure
from scopelink.services.registry import UnknownTelescopeError

PROBLEM_JSON = "application/problem+json"


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


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(exclude_none=True),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path")]
        errors.append({"field": ".".join(loc) or "body", "msg": err.get("msg", "invalid")})
    return errors


def install(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into problems."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        fields = ", ".join(sorted({e["field"] for e in errors}))
        detail = f"invalid {fields}: " + "; ".join(f"{e['field']}: {e['msg']}" for e in errors)
        return problem_response(
            Problem(title="Invalid request", status=422, detail=detail, errors=errors)
        )

    @app.exception_handler(CommandFailure)
    async def _command(request: Request, exc: CommandFailure) -> JSONResponse:
        headers = {"Retry-After": "1"} if exc.kind is ProblemKind.RATE_LIMITED else None
        return problem_response(command_problem(exc), headers)

    @app.exception_handler(UnknownTelescopeError)
    async def _unknown(request: Request, exc: UnknownTelescopeError) -> JSONResponse:
        return problem_response(Problem(title="Unknown telescope", status=404, detail=str(exc)))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        title = {404: "Not found", 405: "Method not allowed", 503: "Unavailable"}.get(
            exc.status_code, "Error"
        )
        detail = exc.detail if isinstance(exc.detail, str) else None
        return problem_response(
            Problem(title=title, status=exc.status_code, detail=detail),
            dict(exc.headers) if exc.headers else None,
        )
