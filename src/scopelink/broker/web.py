"""The broker's HTTP and WebSocket side (docs/remote.md, "The broker's API"): a thin adapter
over `Broker`.

- REST under `/api/`: accounts and sign-in, the telescopes you may use (and whether each is
  online), pairing codes typed by owners, invitations, members and revocation, grants for a
  direct connection on the LAN, fresh ICE servers.
- `/api/proxy/pair` and `/api/proxy/link`: the WebSockets a proxy dials out.
- `/api/telescopes/{id}/signaling`: a browser's signaling, relayed to the telescope's proxy
  untouched (the same protocol as `serve`'s socket).

An account is named by an API token: the `scopelink_session` cookie (HttpOnly, SameSite=Strict,
set at sign-in, for the broker's own page), `Authorization: Bearer`, or, on a WebSocket only,
`?token=`. Host and Origin are checked as by `serve` (`web/security.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.websockets import WebSocketDisconnect

from scopelink.broker.accounts import Account
from scopelink.broker.hub import CLOSE_NO_ANSWER, CLOSE_OFFLINE, TelescopeOffline
from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.service import Broker, Limits
from scopelink.broker.store import sha256
from scopelink.grants import TelescopeRole, normalise_public_key_pem, verify_challenge
from scopelink.ratelimit import TokenBucket
from scopelink.schema.broker import (
    AcceptRequest,
    BrokerAbout,
    BrokerAccountInfo,
    ClaimRequest,
    ConnectionRecord,
    Credentials,
    GrantAnswer,
    Invitation,
    InvitationRequest,
    Me,
    Member,
    Membership,
    RemoteTelescope,
    SignedIn,
    TelescopeDetails,
    TokenRequest,
)
from scopelink.schema.link import (
    CLOSE_NOT_PAIRED,
    CLOSE_REPLACED,
    CLOSE_SILENT,
    CLOSE_UNAUTHENTICATED,
    LINK_VERSION,
    TO_BROKER,
    LinkChallenge,
    LinkEnd,
    LinkIce,
    LinkIceRequest,
    LinkPing,
    LinkPong,
    LinkRefused,
    LinkRegister,
    LinkRegistered,
    LinkRelay,
    PairCode,
    PairDone,
    PairRequest,
    challenge_text,
)
from scopelink.schema.problems import PROBLEM_TYPE
from scopelink.schema.rest import CatalogueEntry
from scopelink.schema.signaling import BURST, MAX_MESSAGE_BYTES, RATE_PER_S, SignalingError
from scopelink.schema.state import Problem
from scopelink.web.catalogue import catalogue_entries
from scopelink.web.sockets import close_quietly

log = logging.getLogger(__name__)

SESSION_COOKIE = "scopelink_session"
#: A proxy's first message must come this soon.
HANDSHAKE_S = 10.0
#: A browser's conversation ends if the proxy has said nothing this long after it opened.
ANSWER_TIMEOUT_S = 10.0

STATUS: dict[RefusalKind, int] = {
    RefusalKind.INVALID: 422,
    RefusalKind.CONFLICT: 409,
    RefusalKind.UNAUTHORIZED: 401,
    RefusalKind.FORBIDDEN: 403,
    RefusalKind.NOT_FOUND: 404,
    RefusalKind.EXPIRED: 410,
    RefusalKind.RATE_LIMITED: 429,
}

router = APIRouter()


def refusal_problem(refusal: BrokerRefusal) -> Problem:
    return Problem(
        type=PROBLEM_TYPE + refusal.kind.value,
        title=refusal.kind.value.replace("_", " ").capitalize(),
        status=STATUS[refusal.kind],
        detail=refusal.detail,
    )


def broker_of(request: Request) -> Broker:
    broker: Broker = request.app.state.broker
    return broker


def _address(connection: Request | WebSocket) -> str:
    return (connection.client.host if connection.client else None) or "unknown"


def _token(connection: Request | WebSocket, allow_query: bool) -> str | None:
    auth = connection.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    cookie = connection.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie
    return connection.query_params.get("token") if allow_query else None


async def _account(connection: Request | WebSocket, broker: Broker, allow_query: bool) -> Account:
    token = _token(connection, allow_query)
    if token is None:
        raise BrokerRefusal(RefusalKind.UNAUTHORIZED, "sign in first")
    try:
        return await broker.accounts.account_for_token(token)
    except BrokerRefusal as refusal:
        raise BrokerRefusal(RefusalKind.UNAUTHORIZED, refusal.detail) from None


async def signed_in(request: Request) -> Account:
    return await _account(request, broker_of(request), allow_query=False)


BrokerDep = Annotated[Broker, Depends(broker_of)]
AccountDep = Annotated[Account, Depends(signed_in)]


def _account_info(account: Account) -> BrokerAccountInfo:
    return BrokerAccountInfo(id=account.id, name=account.name)


def _signed_in_response(broker: Broker, account: Account, token: str) -> JSONResponse:
    response = JSONResponse(SignedIn(account=_account_info(account)).model_dump(mode="json"))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=broker.settings.token_ttl_s,
        httponly=True,
        samesite="strict",
        secure=not broker.settings.insecure_http,
        path="/",
    )
    return response


# -- accounts ----------------------------------------------------------------------------------


@router.get("/api/broker")
async def about(broker: BrokerDep) -> BrokerAbout:
    """What this broker is: the key its grants are signed with, and whether anyone may sign up."""
    return BrokerAbout(
        instance=broker.instance,
        open_signup=broker.settings.open_signup,
        public_key=broker.signer.public_key_pem(),
    )


@router.post("/api/accounts", status_code=201, response_model=SignedIn)
async def sign_up(body: Credentials, request: Request, broker: BrokerDep) -> JSONResponse:
    """Create an account and sign in."""
    Limits.check(broker.limits.logins, (f"addr:{_address(request)}",), "sign-ups")
    if not broker.settings.open_signup:
        raise BrokerRefusal(RefusalKind.FORBIDDEN, "this broker takes no new accounts")
    account = await broker.accounts.create(body.name, body.password)
    issued = await broker.accounts.issue_token(account.id, "browser", broker.settings.token_ttl_s)
    response = _signed_in_response(broker, account, issued.token)
    response.status_code = 201
    return response


@router.post("/api/login", response_model=SignedIn)
async def sign_in(body: Credentials, request: Request, broker: BrokerDep) -> JSONResponse:
    """Sign in: sets the session cookie for the broker's own page."""
    account = await broker.sign_in(body.name, body.password, _address(request))
    issued = await broker.accounts.issue_token(account.id, "browser", broker.settings.token_ttl_s)
    return _signed_in_response(broker, account, issued.token)


@router.post("/api/logout", status_code=204)
async def sign_out(request: Request, broker: BrokerDep, account: AccountDep) -> Response:
    token = _token(request, allow_query=False)
    if token is not None:
        with contextlib.suppress(BrokerRefusal):
            await broker.accounts.revoke_token(account.id, sha256(token)[:16])
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/api/tokens", status_code=201)
async def new_token(body: TokenRequest, broker: BrokerDep, account: AccountDep) -> dict[str, Any]:
    """An API token for scripts (shown once)."""
    issued = await broker.accounts.issue_token(account.id, body.label, body.ttl_s)
    return {
        "token": issued.token,
        "id": issued.id,
        "label": issued.label,
        "expires": issued.expires,
    }


@router.get("/api/me")
async def me(broker: BrokerDep, account: AccountDep) -> Me:
    """You, and the telescopes you may use: your role on each and whether it is online."""
    mine = await broker.telescopes.telescopes_of(account.id)
    online = await broker.presence.online([t.id for t, _ in mine])
    return Me(
        account=_account_info(account),
        telescopes=[
            RemoteTelescope(
                id=t.id,
                name=t.name,
                role=role.value,
                online=t.id in online,
                lan_url=online.get(t.id),
            )
            for t, role in mine
        ],
    )


# -- telescopes --------------------------------------------------------------------------------


@router.post("/api/pairings/claim", status_code=201)
async def claim(
    body: ClaimRequest, request: Request, broker: BrokerDep, account: AccountDep
) -> Membership:
    """Pair the proxy that shows `code`: its telescope becomes yours, named `name`."""
    Limits.check(broker.limits.claims, (f"acct:{account.id}", f"addr:{_address(request)}"), "codes")
    telescope = await broker.pairings.claim(body.code, account.id, body.name)
    return Membership(id=telescope.id, name=telescope.name, role=TelescopeRole.OWNER.value)


@router.get("/api/telescopes/{telescope_id}")
async def telescope(telescope_id: str, broker: BrokerDep, account: AccountDep) -> TelescopeDetails:
    """One telescope; its members and latest connections for an owner."""
    role = await broker.telescopes.role_of(account.id, telescope_id)
    if role is None:
        raise BrokerRefusal(RefusalKind.NOT_FOUND, "no such telescope of yours")
    found = await broker.telescopes.get(telescope_id)
    presence = await broker.presence.of(telescope_id)
    details = TelescopeDetails(
        id=found.id,
        name=found.name,
        role=role.value,
        online=presence is not None,
        lan_url=presence.lan_url if presence is not None else None,
    )
    if role is TelescopeRole.OWNER:
        members = await broker.telescopes.members(account.id, telescope_id)
        details.members = [
            Member(account_id=m.account_id, name=m.name, role=m.role.value, since=m.since)
            for m in members
        ]
        details.connections = [
            ConnectionRecord(
                account=c.account_name, opened=c.opened, ended=c.ended, outcome=c.outcome
            )
            for c in await broker.presence.connections(telescope_id)
        ]
    return details


@router.post("/api/telescopes/{telescope_id}/invitations", status_code=201)
async def invite(
    telescope_id: str, body: InvitationRequest, broker: BrokerDep, account: AccountDep
) -> Invitation:
    """An invitation code (shown once, single use) for someone to join as `role`."""
    issued = await broker.invitations.invite(account.id, telescope_id, body.role)
    return Invitation(code=issued.code, role=issued.role.value, expires=issued.expires)


@router.post("/api/invitations/accept")
async def accept(body: AcceptRequest, broker: BrokerDep, account: AccountDep) -> Membership:
    found, role = await broker.invitations.accept(body.code, account.id)
    return Membership(id=found.id, name=found.name, role=role.value)


@router.delete("/api/telescopes/{telescope_id}/members/{account_id}", status_code=204)
async def revoke(
    telescope_id: str, account_id: str, broker: BrokerDep, account: AccountDep
) -> Response:
    """Take someone's role away; their open sessions on the telescope close at once."""
    await broker.telescopes.revoke_member(account.id, telescope_id, account_id)
    await broker.hub.revoke(telescope_id, account_id)
    return Response(status_code=204)


@router.post("/api/telescopes/{telescope_id}/grant")
async def grant(
    telescope_id: str, request: Request, broker: BrokerDep, account: AccountDep
) -> GrantAnswer:
    """A grant to present to the telescope's proxy directly (on its LAN), for your role."""
    Limits.check(
        broker.limits.connects, (f"acct:{account.id}", f"addr:{_address(request)}"), "connections"
    )
    token = await broker.telescopes.issue_grant(
        account.id, telescope_id, broker.signer, broker.settings.grant_ttl_s
    )
    return GrantAnswer(
        grant=token,
        expires=time.time() + broker.settings.grant_ttl_s,
        iceServers=[s.model_dump(exclude_none=True) for s in broker.ice_for(account)],
    )


@router.get("/api/webrtc/ice-servers")
async def fresh_ice(broker: BrokerDep, account: AccountDep) -> dict[str, Any]:
    """ICE servers with fresh TURN credentials (the page renews them for a new connection)."""
    return {"iceServers": [s.model_dump(exclude_none=True) for s in broker.ice_for(account)]}


@router.get("/api/catalog", tags=["catalogue"])
async def search_catalogue(
    request: Request,
    account: AccountDep,
    q: Annotated[str, Query(min_length=1, max_length=80, description="Name, e.g. `M 42`")],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> list[CatalogueEntry]:
    """Targets by name, for a goto by name through a proxy (which looks the name up in its own
    catalogue). No altitude: the broker does not know where a telescope stands."""
    catalogue = getattr(request.app.state, "catalogue", None)
    if catalogue is None:
        # Made (and ephem loaded) on first use: a broker that nobody searches stays small.
        from scopelink.catalog import Catalogue

        catalogue = request.app.state.catalogue = Catalogue()
    return catalogue_entries(catalogue, q, limit)


# -- the proxy's sockets -----------------------------------------------------------------------


@router.websocket("/api/proxy/pair")
async def pair(websocket: WebSocket) -> None:
    """A proxy asks to be paired: it shows the code we give, an owner types it, we say so."""
    broker: Broker = websocket.app.state.broker
    await websocket.accept()
    try:
        Limits.check(broker.limits.pairings, (f"addr:{_address(websocket)}",), "pairings")
        request = PairRequest.model_validate_json(
            await asyncio.wait_for(websocket.receive_text(), HANDSHAKE_S)
        )
        started = await broker.pairings.start(request.public_key)
        base = str(websocket.base_url).replace("ws", "http", 1).rstrip("/")
        await websocket.send_text(
            PairCode(
                user_code=started.user_code,
                expires_in=started.expires_in,
                verification_url=f"{base}/#pair",
            ).model_dump_json()
        )
        while True:
            await asyncio.sleep(started.interval)
            status = await broker.pairings.poll(started.device_code)
            if status.state.value == "pending":
                continue
            if status.state.value == "paired":
                done = PairDone(
                    type="paired",
                    telescope_id=status.telescope_id,
                    broker_key=broker.signer.public_key_pem(),
                )
            else:
                kind: Literal["expired", "locked"] = (
                    "locked" if status.state.value == "locked" else "expired"
                )
                done = PairDone(type=kind, detail=f"the code is {kind}; start pairing again")
            await websocket.send_text(done.model_dump_json())
            await close_quietly(websocket, 1000, done.type)
            return
    except BrokerRefusal as refusal:
        await websocket.send_text(PairDone(type="refused", detail=refusal.detail).model_dump_json())
        await close_quietly(websocket, 1008, refusal.detail)
    except (ValidationError, TimeoutError):
        await close_quietly(websocket, 1008, "send a pair request first")
    except WebSocketDisconnect:
        pass


class _ProxySocket:
    """A proxy's link as the hub sees it."""

    def __init__(self, websocket: WebSocket, broker: Broker) -> None:
        self.websocket = websocket
        self.broker = broker
        self._lock = asyncio.Lock()

    async def send(self, message: BaseModel) -> bool:
        text = message.model_dump_json()
        try:
            async with self._lock:
                await self.websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return False
        return True


async def _refuse_link(websocket: WebSocket, status: int, detail: str, code: int) -> None:
    problem = Problem(title="Link refused", status=status, detail=detail)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_text(LinkRefused(problem=problem).model_dump_json())
    await close_quietly(websocket, code, detail)


@router.websocket("/api/proxy/link")
async def proxy_link(websocket: WebSocket) -> None:
    """A proxy's link: it proves the key it was paired with, then carries conversations."""
    broker: Broker = websocket.app.state.broker
    await websocket.accept()
    nonce = secrets.token_urlsafe(24)
    await websocket.send_text(LinkChallenge(nonce=nonce).model_dump_json())
    try:
        register = TO_BROKER.validate_json(
            await asyncio.wait_for(websocket.receive_text(), HANDSHAKE_S)
        )
    except (ValidationError, TimeoutError, WebSocketDisconnect, KeyError):
        await _refuse_link(
            websocket, 400, "send register after the challenge", CLOSE_UNAUTHENTICATED
        )
        return
    if not isinstance(register, LinkRegister):
        await _refuse_link(
            websocket, 400, "send register after the challenge", CLOSE_UNAUTHENTICATED
        )
        return
    if register.version != LINK_VERSION:
        await _refuse_link(
            websocket, 426, f"link version {register.version} is not {LINK_VERSION}; upgrade", 1002
        )
        return
    try:
        proven = verify_challenge(
            register.public_key, challenge_text(nonce, register.telescope_id), register.signature
        )
        key = normalise_public_key_pem(register.public_key)
    except ValueError:
        proven = False
    if not proven:
        await _refuse_link(
            websocket, 401, "the signature does not prove that key", CLOSE_UNAUTHENTICATED
        )
        return
    try:
        await broker.telescopes.check_proxy_claim(key, register.telescope_id)
    except BrokerRefusal as refusal:
        log.warning("proxy link from %s refused: %s", _address(websocket), refusal.detail)
        await _refuse_link(websocket, 403, refusal.detail, CLOSE_NOT_PAIRED)
        return
    telescope_id = register.telescope_id
    end = _ProxySocket(websocket, broker)
    previous = await broker.hub.link_up(telescope_id, end, register.max_peers, register.lan_url)
    if isinstance(previous, _ProxySocket):
        await close_quietly(previous.websocket, CLOSE_REPLACED, "a newer link for this telescope")
    heartbeat = broker.settings.heartbeat_s
    await end.send(LinkRegistered(telescope_id=telescope_id, heartbeat_s=heartbeat))
    log.info("proxy of telescope %s linked from %s", telescope_id, _address(websocket))
    traffic = broker.hub.traffic
    try:
        while True:
            try:
                text = await asyncio.wait_for(websocket.receive_text(), heartbeat * 3)
            except TimeoutError:
                await close_quietly(websocket, CLOSE_SILENT, "no heartbeat")
                return
            try:
                message = TO_BROKER.validate_json(text)
            except ValidationError:
                log.warning("proxy %s: unreadable message skipped", telescope_id)
                continue
            match message:
                case LinkPing():
                    traffic.keepalive(len(text))
                    if not await broker.hub.heartbeat(telescope_id):
                        await close_quietly(websocket, CLOSE_REPLACED, "linked elsewhere")
                        return
                    await end.send(LinkPong(t=message.t))
                case LinkPong():
                    traffic.keepalive(len(text))
                case LinkRelay() | LinkEnd():
                    await broker.hub.from_proxy(telescope_id, message)
                case LinkIceRequest():
                    servers = broker.ice_for(f"proxy-{telescope_id}")
                    await end.send(LinkIce(id=message.id, ice_servers=servers))
                case _:
                    pass
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        await broker.hub.link_down(telescope_id, end)
        log.info("proxy of telescope %s unlinked", telescope_id)


# -- a browser's signaling ---------------------------------------------------------------------


class _BrowserSocket:
    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.closed: tuple[int, str] | None = None
        self._lock = asyncio.Lock()

    async def deliver(self, text: str) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            async with self._lock:
                await self.websocket.send_text(text)

    async def finish(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        async with self._lock:
            await close_quietly(self.websocket, code, reason)


async def _refuse_browser(websocket: WebSocket, problem: Problem, code: int) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await websocket.send_text(SignalingError(problem=problem).model_dump_json())
    await close_quietly(websocket, code, problem.detail or problem.title)


@router.websocket("/api/telescopes/{telescope_id}/signaling")
async def browser_signaling(websocket: WebSocket, telescope_id: str) -> None:
    """A browser's signaling with a telescope's proxy, through whichever instance holds it."""
    broker: Broker = websocket.app.state.broker
    await websocket.accept()
    try:
        account = await _account(websocket, broker, allow_query=True)
        Limits.check(
            broker.limits.connects,
            (f"acct:{account.id}", f"addr:{_address(websocket)}"),
            "connections",
        )
        grant = await broker.telescopes.issue_grant(
            account.id, telescope_id, broker.signer, broker.settings.grant_ttl_s
        )
    except BrokerRefusal as refusal:
        await _refuse_browser(
            websocket, refusal_problem(refusal), 4000 + STATUS[refusal.kind] % 1000
        )
        return
    hub = broker.hub
    conv = hub.new_conv()
    end = _BrowserSocket(websocket)
    try:
        await hub.connect(
            conv,
            telescope_id,
            account.id,
            grant,
            broker.ice_for(f"proxy-{telescope_id}"),
            broker.ice_for(account),
            end,
        )
    except TelescopeOffline:
        problem = Problem(
            type=PROBLEM_TYPE + "offline",
            title="Telescope offline",
            status=503,
            detail="its proxy is not connected to the broker; is it running?",
        )
        await _refuse_browser(websocket, problem, CLOSE_OFFLINE)
        return
    outcome = "left"
    bucket = TokenBucket(RATE_PER_S, BURST)

    async def watch_answer() -> None:
        nonlocal outcome
        if not await hub.answered(conv, ANSWER_TIMEOUT_S) and end.closed is None:
            outcome = "no answer"
            problem = Problem(
                type=PROBLEM_TYPE + "no-answer",
                title="No answer",
                status=504,
                detail="the telescope's proxy did not answer",
            )
            end.closed = (CLOSE_NO_ANSWER, problem.detail or "")
            await _refuse_browser(websocket, problem, CLOSE_NO_ANSWER)

    watchdog = asyncio.create_task(watch_answer(), name=f"answer-{conv}")
    try:
        while end.closed is None:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            text = message.get("text")
            if text is None or len(text) > MAX_MESSAGE_BYTES:
                continue  # the proxy's conversation would refuse it; nothing to relay
            if not bucket.take():
                outcome = "flood"
                problem = Problem(title="Too many messages", status=429, detail="closing")
                end.closed = (1008, "too many messages")
                await _refuse_browser(websocket, problem, 1008)
                break
            await hub.from_browser(conv, text)
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        watchdog.cancel()
        if end.closed is None or outcome in ("no answer", "flood"):
            await hub.browser_left(conv, outcome)
