"""Problems over HTTP (RFC 9457 `application/problem+json`): the response, and the handlers for
bad requests and HTTP errors that every server of ours installs (the app, the broker). Nothing
here knows the services, so the broker loads none of them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from scopelink.schema.state import Problem

PROBLEM_JSON = "application/problem+json"


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


def install_http(app: FastAPI) -> None:
    """Bad requests (field by field) and HTTP errors as problems."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        fields = ", ".join(sorted({e["field"] for e in errors}))
        detail = f"invalid {fields}: " + "; ".join(f"{e['field']}: {e['msg']}" for e in errors)
        return problem_response(
            Problem(title="Invalid request", status=422, detail=detail, errors=errors)
        )

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
