"""WHEP transport: any standard WHEP player can watch a telescope (draft-ietf-wish-whep).

A thin adapter over `scopelink.webrtc`: `POST` an SDP offer → `201 Created` with the answer and
the session's `Location`; `PATCH` that resource with `application/trickle-ice-sdpfrag` to
trickle candidates (an ICE restart is refused with 422: aiortc cannot restart ICE, so the player
starts a new session); `DELETE` it to stop; `OPTIONS` lists the ICE servers as `Link` headers
(RFC 9725 §4.6). Also the per-peer stats and the browser's ICE servers for the app's own UI.

Tokens and origins are checked by `SecurityMiddleware`; viewers may watch. The session URL is
the capability to change or end a session: only its creator (or an operator) may use it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from scopelink.auth import Caller
from scopelink.schema.state import Problem
from scopelink.web.deps import TelescopeDep
from scopelink.web.http_problems import problem_response
from scopelink.web.rtc import peer_host
from scopelink.webrtc.negotiation import (
    NegotiationError,
    NegotiationProblem,
    add_candidates,
    negotiation_problem,
)
from scopelink.webrtc.peer import Peer
from scopelink.webrtc.sessions import UnknownPeer

log = logging.getLogger(__name__)

router = APIRouter()

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
#: An offer is a few kB; anything far larger is not one.
MAX_BODY_BYTES = 64 * 1024
_NO_STORE = {"Cache-Control": "no-store"}


def _caller(request: Request) -> Caller:
    return request.state.caller


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _problem(status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> Any:
    return problem_response(Problem(title=title, status=status, detail=detail), headers)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ice_link_headers(servers: list[dict[str, Any]]) -> list[str]:
    """One `Link: <url>; rel="ice-server"…` value per URL, as WHIP/WHEP players read them."""
    links = []
    for server in servers:
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        for url in urls:
            link = f'<{url}>; rel="ice-server"'
            if server.get("username") is not None:
                link += f"; username={_quote(server['username'])}"
                link += f"; credential={_quote(server['credential'])}"
                link += '; credential-type="password"'
            links.append(link)
    return links


def _with_links(response: Response, links: list[str]) -> Response:
    for link in links:
        response.headers.append("Link", link)
    return response


async def _body(request: Request) -> str | None:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return None
    return body.decode("utf-8", errors="replace")


def _session_for(request: Request, telescope_id: str, session_id: str) -> Peer | Response:
    try:
        session = peer_host(request).peers.get(session_id)
    except UnknownPeer as exc:
        return _problem(404, "Unknown session", str(exc))
    if session.telescope_id != telescope_id:
        return _problem(404, "Unknown session", f"no peer session {session_id!r} here")
    caller = _caller(request)
    if not caller.may_change(session.client):
        return _problem(403, "Not your session", "only its creator or an operator may change it")
    return session


def _resource(telescope_id: str, session_id: str) -> str:
    return f"/api/telescopes/{telescope_id}/whep/{session_id}"


@router.options("/api/telescopes/{telescope_id}/whep", status_code=204)
async def whep_options(request: Request, session: TelescopeDep) -> Response:
    """What a WHEP player needs before it offers: accepted type and the ICE servers."""
    links = ice_link_headers(peer_host(request).ice_servers(_caller(request).client))
    response = Response(status_code=204, headers={"Accept-Post": SDP, **_NO_STORE})
    return _with_links(response, links)


@router.post(
    "/api/telescopes/{telescope_id}/whep",
    status_code=201,
    response_class=Response,
    responses={
        201: {"content": {SDP: {}}, "description": "The answer; `Location` names the session."},
        400: {"description": "An offer this server cannot answer."},
        415: {"description": "The body is not `application/sdp`."},
        503: {"description": "The limit of concurrent peers is reached."},
    },
)
async def whep_offer(request: Request, session: TelescopeDep) -> Response:
    """Start watching: an SDP offer in, the answer (with all server candidates) out."""
    if _media_type(request) != SDP:
        return _problem(
            415, "Unsupported media type", f"a WHEP offer is {SDP}", {"Accept-Post": SDP}
        )
    offer = await _body(request)
    if offer is None:
        return _problem(413, "Offer too large", f"an SDP offer is at most {MAX_BODY_BYTES} bytes")
    caller = _caller(request)
    host = peer_host(request)
    try:
        peer, answer = await host.start(session, caller, offer)
    except NegotiationError as exc:
        retry = {"Retry-After": "10"} if exc.kind is NegotiationProblem.TOO_MANY_PEERS else None
        return problem_response(negotiation_problem(exc), retry)
    headers = {
        "Location": _resource(session.id, peer.id),
        "ETag": f'"{peer.local_ufrag or peer.id}"',
        **_NO_STORE,
    }
    response = Response(answer, status_code=201, media_type=SDP, headers=headers)
    return _with_links(response, ice_link_headers(host.ice_servers(caller.client)))


@router.patch(
    "/api/telescopes/{telescope_id}/whep/{session_id}",
    status_code=204,
    response_class=Response,
    responses={
        404: {"description": "No such session."},
        415: {"description": f"The body is not `{SDPFRAG}`."},
        422: {"description": "An ICE restart: not supported, start a new session."},
    },
)
async def whep_trickle(request: Request, telescope_id: str, session_id: str) -> Response:
    """Trickle the player's ICE candidates into a session."""
    found = _session_for(request, telescope_id, session_id)
    if isinstance(found, Response):
        return found
    if _media_type(request) != SDPFRAG:
        return _problem(415, "Unsupported media type", f"trickle ICE is sent as {SDPFRAG}")
    fragment = await _body(request)
    if fragment is None:
        return _problem(413, "Fragment too large", f"at most {MAX_BODY_BYTES} bytes")
    try:
        await add_candidates(found, fragment)
    except NegotiationError as exc:
        return problem_response(negotiation_problem(exc))
    return Response(status_code=204)


@router.delete(
    "/api/telescopes/{telescope_id}/whep/{session_id}",
    status_code=200,
    response_class=Response,
    responses={404: {"description": "No such session."}},
)
async def whep_delete(request: Request, telescope_id: str, session_id: str) -> Response:
    """Stop watching: the peer closes, and the stream stops after the last viewer."""
    found = _session_for(request, telescope_id, session_id)
    if isinstance(found, Response):
        return found
    await found.close()
    return Response(status_code=200)


@router.get("/api/telescopes/{telescope_id}/webrtc/peers")
async def webrtc_peers(request: Request, session: TelescopeDep) -> JSONResponse:
    """Per-peer stats (bytes, fps, bitrate, RTT, loss, tier, state) of a telescope's peers.

    Session ids are shown only to their creator and to operators (an id ends a session).
    """
    caller = _caller(request)
    out = []
    for stats in peer_host(request).peers.stats(session.id):
        item = asdict(stats)
        if not caller.may_change(stats.client):
            item["id"] = None
        item.pop("client")
        out.append(item)
    return JSONResponse({"peers": out}, headers=_NO_STORE)


@router.get("/api/webrtc/ice-servers")
async def browser_ice_servers(request: Request) -> JSONResponse:
    """The `iceServers` for the browser's RTCPeerConnection, with fresh TURN credentials."""
    servers = peer_host(request).ice_servers(_caller(request).client)
    return JSONResponse({"iceServers": servers}, headers=_NO_STORE)
