"""The REST API: telescopes, their state and operations, commands, and the catalogue.

Every command route parses its body into a schema model and hands it to the command service;
nothing here talks to a telescope directly.
"""

from __future__ import annotations

import inspect
import re
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from scopelink.auth import VIEWERS_DO_NOT_CONTROL, Caller
from scopelink.catalog import Catalogue
from scopelink.grants import GrantRefused
from scopelink.schema import commands as c
from scopelink.schema.operations import Operation
from scopelink.schema.rest import (
    AccessInfo,
    CatalogueEntry,
    ControlAction,
    NewTelescope,
    TelescopeSummary,
)
from scopelink.schema.state import CommandAck, ControlState, Problem, ProblemKind, TelescopeState
from scopelink.services.command_service import CommandFailure, CommandService, take_control
from scopelink.services.control import Controller, control_state
from scopelink.services.telemetry import TelemetryHub
from scopelink.services.telescope import Telescope
from scopelink.settings import (
    TelescopeTarget,
)
from scopelink.web.catalogue import catalogue_entries
from scopelink.web.deps import Registry, TelescopeDep
from scopelink.web.security import TOKEN_COOKIE

router = APIRouter(prefix="/api")

PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (403, 404, 409, 422, 429, 502, 503, 504)
}


def get_commands(request: Request) -> CommandService:
    return request.app.state.commands


def get_hub(request: Request) -> TelemetryHub:
    return request.app.state.telemetry


def get_catalogue(request: Request) -> Catalogue:
    return request.app.state.catalogue


def get_caller(request: Request) -> Caller:
    return request.state.caller


Commands = Annotated[CommandService, Depends(get_commands)]
Hub = Annotated[TelemetryHub, Depends(get_hub)]
CallerDep = Annotated[Caller, Depends(get_caller)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        description="Send the same key again to get the same result without running twice.",
    ),
]


def require_operator(caller: CallerDep) -> Caller:
    if not caller.may_command:
        raise HTTPException(403, "this needs an operator token")
    return caller


# -- session and telescopes -------------------------------------------------------------------


@router.get("/session", response_model=AccessInfo, tags=["session"])
async def session_info(request: Request, caller: CallerDep) -> AccessInfo:
    """Who the server thinks you are."""
    return AccessInfo(
        role=caller.role,
        token_required=request.app.state.policy.tokens_required,
        webrtc_default=request.app.state.settings.webrtc_default,
    )


class GrantExchange(BaseModel):
    """A broker's grant, presented to a telescope-side proxy's own page."""

    grant: str = Field(min_length=1, max_length=4096)


@router.post(
    "/session/grant",
    response_model=AccessInfo,
    responses={401: {"model": Problem}, 404: {"model": Problem}},
    tags=["session"],
)
async def exchange_grant(body: GrantExchange, request: Request) -> JSONResponse:
    """On a telescope-side proxy: exchange a broker's grant (once) for a session on this page,
    kept in an HttpOnly cookie; answers who you now are. Not found on `serve`."""
    grants = request.app.state.policy.grants
    if grants is None:
        raise HTTPException(404, "this server takes no broker grants (it is not a proxy)")
    try:
        token, caller, expires = grants.exchange(body.grant)
    except GrantRefused as exc:
        raise HTTPException(401, f"grant refused: {exc.reason}") from None
    info = AccessInfo(
        role=caller.role,
        token_required=True,
        webrtc_default=request.app.state.settings.webrtc_default,
    )
    response = JSONResponse(info.model_dump(mode="json"))
    response.set_cookie(
        TOKEN_COOKIE,
        token,
        max_age=int(expires - time.time()),
        httponly=True,
        samesite="strict",
        path="/",
    )
    return response


def _summary(session: Any) -> TelescopeSummary:
    return TelescopeSummary(
        id=session.id,
        name=session.name,
        host=session.host,
        simulated=session.simulated,
        control=str(session.control.state),
        imaging=str(session.imaging.state),
        model=session.product_model,
        cameras=list(session.cameras),
    )


@router.get("/telescopes", response_model=list[TelescopeSummary], tags=["telescopes"])
async def list_telescopes(registry: Registry) -> list[TelescopeSummary]:
    return [_summary(s) for s in registry]


@router.post(
    "/telescopes",
    status_code=201,
    response_model=TelescopeSummary,
    responses=PROBLEMS,
    tags=["telescopes"],
)
async def add_telescope(
    body: NewTelescope, registry: Registry, _: Annotated[Caller, Depends(require_operator)]
) -> TelescopeSummary:
    """Connect to another telescope; it keeps retrying in the background until it answers."""
    target = TelescopeTarget(
        host=body.host,
        control_port=body.control_port,
        imaging_port=body.imaging_port,
        rtsp_port=body.rtsp_port,
        wide_imaging_port=body.wide_imaging_port,
        wide_rtsp_port=body.wide_rtsp_port,
        name=body.name,
    )
    return _summary(await registry.add(target))


@router.delete(
    "/telescopes/{telescope_id}", status_code=204, responses=PROBLEMS, tags=["telescopes"]
)
async def remove_telescope(
    session: TelescopeDep, registry: Registry, _: Annotated[Caller, Depends(require_operator)]
) -> None:
    await registry.remove(session.id)


@router.get(
    "/telescopes/{telescope_id}",
    response_model=TelescopeState,
    responses=PROBLEMS,
    tags=["telescopes"],
)
async def telescope_state(session: TelescopeDep, hub: Hub) -> TelescopeState:
    """The telescope's current state (the same model the event stream sends)."""
    return hub.channel(session.id).state


@router.get(
    "/telescopes/{telescope_id}/operations", response_model=list[Operation], tags=["operations"]
)
async def list_operations(session: TelescopeDep) -> list[Operation]:
    return session.operations.recent()


@router.get(
    "/telescopes/{telescope_id}/operations/{operation_id}",
    response_model=Operation,
    responses=PROBLEMS,
    tags=["operations"],
)
async def get_operation(session: TelescopeDep, operation_id: str) -> Operation:
    op = session.operations.get(operation_id)
    if op is None:
        raise HTTPException(404, f"no operation {operation_id!r} on {session.id}")
    return op


# -- commands ---------------------------------------------------------------------------------


#: `Scopelink-Client`: a client's own id (a browser tab's), so that its REST commands and its
#: data channel are one controller for the control lease.
CLIENT_HEADER = "scopelink-client"
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def _controller(request: Request, caller: Caller) -> Controller:
    """Who controls, for the lease: the caller (its token or address), and within it the client
    that named itself (bound to the caller, so another caller cannot pose as it)."""
    named = request.headers.get(CLIENT_HEADER)
    if named is not None and not _CLIENT_ID.match(named):
        raise HTTPException(400, f"{CLIENT_HEADER} is 8 to 64 letters, digits, '-' or '_'")
    client = caller.client if named is None else f"{caller.client}/{named}"
    return Controller(client, transport="rest")


async def _execute(
    request: Request, session: Any, command: Any, caller: Caller, key: str | None
) -> CommandAck:
    service: CommandService = request.app.state.commands
    return await service.execute(
        session.id,
        command,
        client=caller.client,
        role=caller.role,
        idempotency_key=key,
        controller=_controller(request, caller),
        who=caller.name,
    )


@router.get(
    "/telescopes/{telescope_id}/control",
    response_model=ControlState,
    responses=PROBLEMS,
    tags=["control"],
)
async def get_control(request: Request, session: TelescopeDep, caller: CallerDep) -> ControlState:
    """Who controls this telescope (the one client whose commands it takes), as you see it."""
    lease = request.app.state.commands.lease(session.id)
    return control_state(lease, _controller(request, caller).client)


@router.post(
    "/telescopes/{telescope_id}/control",
    response_model=ControlState,
    responses=PROBLEMS,
    tags=["control"],
)
async def change_control(
    request: Request, session: TelescopeDep, caller: CallerDep, body: ControlAction
) -> ControlState:
    """Take, ask for, release, grant or deny control (see `ControlAction`)."""
    if not caller.may_command:
        raise CommandFailure(
            "Forbidden",
            VIEWERS_DO_NOT_CONTROL,
            kind=ProblemKind.FORBIDDEN,
            outcome="not_run",
        )
    lease = request.app.state.commands.lease(session.id)
    who = _controller(request, caller)
    match body.action:
        case "take":
            take_control(lease, who)
        case "request":
            if not await lease.request(who):
                raise CommandFailure(
                    "Control not handed over",
                    "the holder said no, or someone else asked first",
                    kind=ProblemKind.NOT_IN_CONTROL,
                    outcome="not_run",
                )
        case "release":
            lease.release(who.client)
        case "grant" | "deny":
            if not lease.answer(who.client, body.action == "grant"):
                raise HTTPException(409, "nobody asked you for control")
    return control_state(lease, who.client)


@router.post(
    "/telescopes/{telescope_id}/commands",
    response_model=CommandAck,
    responses=PROBLEMS,
    tags=["commands"],
)
async def run_command(
    request: Request,
    session: TelescopeDep,
    caller: CallerDep,
    command: Annotated[c.Command, Body()],
    idempotency_key: IdempotencyKey = None,
) -> CommandAck:
    """Any command, by its `type`; the per-command routes below are shorthands for this."""
    return await _execute(request, session, command, caller, idempotency_key)


def _command_route(path: str, model: type[BaseModel], summary: str) -> None:
    try:
        model()
        optional = True  # commands without required fields may be posted with no body at all
    except ValidationError:
        optional = False

    async def route(
        request: Request,
        session: Telescope,
        caller: Caller,
        body: BaseModel | None,
        idempotency_key: str | None,
    ) -> CommandAck:
        command = body if body is not None else model()
        return await _execute(request, session, command, caller, idempotency_key)

    # The body's type differs per route, so the signature FastAPI reads is built here.
    body_type = Annotated[model | None, Body()] if optional else Annotated[model, Body()]
    param = inspect.Parameter.POSITIONAL_OR_KEYWORD
    route.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("request", param, annotation=Request),
            inspect.Parameter("session", param, annotation=TelescopeDep),
            inspect.Parameter("caller", param, annotation=CallerDep),
            inspect.Parameter(
                "body", param, annotation=body_type, default=None if optional else inspect._empty
            ),
            inspect.Parameter("idempotency_key", param, annotation=IdempotencyKey, default=None),
        ],
        return_annotation=CommandAck,
    )
    route.__name__ = f"command_{path.replace('/', '_').replace('-', '_')}"
    router.add_api_route(
        f"/telescopes/{{telescope_id}}/{path}",
        route,
        methods=["POST"],
        response_model=CommandAck,
        responses=PROBLEMS,
        summary=summary,
        tags=["commands"],
    )


for _path, _model, _title in (
    ("goto", c.Goto, "Slew to a target by name or coordinates, then track it"),
    ("stop", c.Stop, "Stop every motion"),
    ("move", c.Move, "Move in a direction at a speed for a while"),
    ("park", c.Park, "Park the telescope"),
    ("tracking", c.SetTracking, "Switch tracking on or off"),
    ("focus", c.Focus, "Move the focuser (absolute or relative)"),
    ("autofocus", c.Autofocus, "Run autofocus"),
    ("autofocus/stop", c.StopAutofocus, "Stop autofocus"),
    ("view", c.StartView, "Start a view mode"),
    ("view/stop", c.StopView, "Stop the view"),
    ("stack", c.StartStack, "Start stacking"),
    ("stack/stop", c.StopStack, "Stop stacking"),
    ("zoom", c.SetZoom, "Set the video views' digital zoom (1x, 2x, 4x)"),
    ("recording", c.StartRecording, "Start recording the video on the telescope"),
    ("recording/stop", c.StopRecording, "Stop recording (the telescope saves the file)"),
    ("settings/exposure", c.SetExposure, "Set preview and stacking exposure"),
    ("settings/gain", c.SetGain, "Set the gain"),
    ("settings/lp-filter", c.SetLpFilter, "Switch the light-pollution filter"),
    ("settings/dew-heater", c.SetDewHeater, "Switch the dew heater"),
    ("time", c.SyncTime, "Set the telescope's clock"),
    ("location", c.SyncLocation, "Set the telescope's site"),
):
    _command_route(_path, _model, _title)


# -- catalogue --------------------------------------------------------------------------------


@router.get("/catalog", response_model=list[CatalogueEntry], tags=["catalogue"])
async def search_catalogue(
    request: Request,
    registry: Registry,
    q: Annotated[str, Query(min_length=1, max_length=80, description="Name, e.g. `M 42`")],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
    telescope_id: Annotated[str | None, Query(description="Give alt/az at its site")] = None,
) -> list[CatalogueEntry]:
    catalogue: Catalogue = request.app.state.catalogue
    site = registry.get(telescope_id).site if telescope_id is not None else None
    where = (site.lat_deg, site.lon_deg) if site is not None else None
    return catalogue_entries(catalogue, q, limit, where)


@router.get("/health", tags=["session"])
async def health() -> dict[str, str]:
    return {"status": "ok"}
