"""The data-channel protocol's endpoint (docs/protocol.md): one per peer connection, a thin
adapter into the same `CommandService` and `TelemetryHub` as REST and SSE.

The viewer opens `control` (reliable, ordered) and, optionally, `telescope` (unordered,
`maxRetransmits: 0`). On `control`: `hello` → `welcome`; `command` → `ack` at once (taken or
refused), then `result`; `ping` → `pong`; `lease` actions; `resync`; `offer` (a new peer
connection negotiated over this one); the server adds `progress`, firmware `event`s and `lease`
changes. On `telemetry` (or `control` when the viewer opened no telemetry channel): a
snapshot, then numbered deltas, a fresh snapshot every `SNAPSHOT_INTERVAL_S`, and, when the
channel backs up, deltas dropped for a snapshot once it drains (latest wins).

Hostile input gets an `error` and loses nothing else; the endpoint never closes on it (a flood
beyond the message rate is answered with one error a second and otherwise ignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCDataChannel
from pydantic import BaseModel, ValidationError

from scopelink.auth import VIEWERS_DO_NOT_CONTROL, Caller
from scopelink.ratelimit import TokenBucket
from scopelink.schema.channel import (
    CLIENT_MESSAGE,
    CLIENT_TYPES,
    CONTROL_CHANNEL,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    TELEMETRY_CHANNEL,
    Ack,
    CommandRequest,
    FirmwareEvent,
    Hello,
    Lease,
    LeaseRequest,
    Ping,
    Pong,
    Progress,
    ProtocolError,
    Renegotiate,
    RenegotiateAnswer,
    Result,
    Resync,
    Telemetry,
    Welcome,
)
from scopelink.schema.commands import COMMAND_ADAPTER
from scopelink.schema.operations import Operation
from scopelink.schema.problems import PROBLEM_TYPE, message_detail, message_errors
from scopelink.schema.state import Problem, ProblemKind
from scopelink.services.command_service import CommandFailure, CommandService, take_control
from scopelink.services.control import (
    DEADMAN_S,
    KEEPALIVE_S,
    ControlLease,
    Controller,
    control_state,
)
from scopelink.services.telemetry import TelemetryChannel, TelemetryMessage
from scopelink.services.telescope import Telescope
from scopelink.web.problems import command_problem
from scopelink.webrtc.negotiation import NegotiationError, negotiation_problem
from scopelink.webrtc.peer import Peer

log = logging.getLogger(__name__)

#: Messages a second one endpoint takes on `control`, and the burst above it.
RATE_PER_S = 50.0
BURST = 100
#: A full snapshot this often on the telemetry channel, so that a lost delta heals.
SNAPSHOT_INTERVAL_S = 5.0
#: Telemetry drops deltas (and sends a snapshot instead once drained) while this many bytes are
#: queued on its channel, and looks again this often. This much older telemetry at most waits
#: ahead of the newest: ten seconds of 10 Hz telemetry, a second on a 128 kbit/s link.
BUFFERED_HIGH = 16 * 1024
DRAIN_POLL_S = 0.1

#: Starts a new peer connection for an `offer` received over this one: its session id and answer.
Renegotiator = Callable[[Renegotiate, "ChannelEndpoint"], Awaitable[tuple[str, str]]]


def _problem(kind: str, title: str, status: int, detail: str) -> Problem:
    return Problem(type=PROBLEM_TYPE + kind, title=title, status=status, detail=detail)


class _BadMessage(ValueError):
    def __init__(self, problem: Problem, ref: str | None = None) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.ref = ref


class ChannelEndpoint:
    """The protocol for one peer connection's data channels."""

    def __init__(
        self,
        peer: Peer,
        *,
        telescope: Telescope,
        commands: CommandService,
        telemetry: TelemetryChannel,
        caller: Caller,
        renegotiate: Renegotiator | None = None,
    ) -> None:
        self.peer = peer
        self.telescope = telescope
        self.commands = commands
        self.telemetry = telemetry
        self.caller = caller
        self._renegotiate = renegotiate
        self.control: RTCDataChannel | None = None
        self.status: RTCDataChannel | None = None
        self.controller: Controller | None = None
        self.lease: ControlLease = commands.lease(telescope.id)
        self._bucket = TokenBucket(RATE_PER_S, BURST)
        self._flood_reported = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._follower: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        #: Tells the lease this connection is gone (its pending request ends with the last one).
        self._disconnected: Callable[[], None] | None = None
        self._resync = asyncio.Event()
        #: The seq of the last telemetry message sent (a delta's `prev`).
        self._telemetry_seq: int | None = None
        self._closed = False
        self._spawn(self._close_with_peer(), "close-with-peer")

    # -- channels -------------------------------------------------------------------------------

    def attach(self, channel: RTCDataChannel) -> None:
        """A data channel the viewer opened."""
        if channel.label == CONTROL_CHANNEL and self.control is None:
            self.control = channel
            channel.on("message", self._on_message)
            channel.on("close", self.close)
        elif channel.label == TELEMETRY_CHANNEL and self.status is None:
            self.status = channel
            channel.on("message", lambda _: None)  # nothing is read here
        else:
            channel.close()

    def _send(self, message: BaseModel, channel: RTCDataChannel | None = None) -> bool:
        """Send one message (on `control` by default); False when the channel is gone."""
        channel = channel or self.control
        if channel is None or channel.readyState != "open":
            return False
        text = message.model_dump_json(exclude_none=isinstance(message, ProtocolError))
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            log.error("data channel: a %s message is too large to send", type(message).__name__)
            return False
        channel.send(text)
        return True

    def _error(self, problem: Problem, ref: str | None = None) -> None:
        self._send(ProtocolError(problem=problem, ref=ref))

    # -- reading --------------------------------------------------------------------------------

    def _on_message(self, raw: str | bytes) -> None:
        if self._closed:
            return
        if not self._bucket.take():
            now = time.monotonic()
            if now - self._flood_reported >= 1.0:
                self._flood_reported = now
                self._error(
                    _problem(
                        "too-many-messages",
                        "Too many messages",
                        429,
                        f"at most {RATE_PER_S:g} messages a second; messages beyond are dropped",
                    )
                )
            return
        try:
            message = self._parse(raw)
        except _BadMessage as exc:
            self._error(exc.problem, exc.ref)
            return
        if self.controller is not None:
            self.lease.touch(self.controller.client)
        try:
            self._dispatch(message)
        except _BadMessage as exc:
            self._error(exc.problem, exc.ref)

    def _parse(self, raw: str | bytes) -> Any:
        if isinstance(raw, bytes):
            raise _BadMessage(
                _problem("malformed", "Unsupported message", 400, "messages are JSON text")
            )
        if len(raw) > MAX_MESSAGE_BYTES or len(raw.encode()) > MAX_MESSAGE_BYTES:
            raise _BadMessage(
                _problem(
                    "oversize",
                    "Message too large",
                    413,
                    f"a message is at most {MAX_MESSAGE_BYTES} bytes",
                )
            )
        try:
            data = json.loads(raw)
        except ValueError:
            raise _BadMessage(
                _problem("malformed", "Not JSON", 400, "a message is a JSON object")
            ) from None
        if not isinstance(data, dict):
            raise _BadMessage(
                _problem("malformed", "Not an object", 400, "a message is a JSON object")
            )
        kind = data.get("type")
        ref = _ref(data)
        if data.get("v") != PROTOCOL_VERSION:
            raise _BadMessage(
                _problem(
                    "unsupported-version",
                    "Unsupported version",
                    400,
                    f"this server speaks version {PROTOCOL_VERSION} (`v`)",
                ),
                ref,
            )
        if not isinstance(kind, str) or kind not in CLIENT_TYPES:
            shown = repr(kind)[:40]
            raise _BadMessage(
                _problem("unknown-type", "Unknown message type", 400, f"no message type {shown}"),
                ref,
            )
        try:
            return CLIENT_MESSAGE.validate_python(data)
        except ValidationError as exc:
            raise _BadMessage(
                _problem("malformed", f"Bad {kind}", 400, message_detail(exc)), ref
            ) from None

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, Hello):
            self._on_hello(message)
            return
        if self.controller is None:
            raise _BadMessage(
                _problem("no-hello", "Say hello first", 409, "the first message is `hello`"),
                _ref(message.model_dump()),
            )
        match message:
            case CommandRequest():
                self._on_command(message)
            case Ping():
                self._send(Pong(t=message.t, server_time_ms=time.time() * 1000))
            case LeaseRequest():
                self._on_lease(message)
            case Resync():
                self._resync.set()
            case Renegotiate():
                self._on_offer(message)

    # -- hello ------------------------------------------------------------------------------------

    def _on_hello(self, hello: Hello) -> None:
        if self.controller is not None:
            raise _BadMessage(
                _problem("malformed", "Hello again", 409, "this connection has said hello"),
                "hello",
            )
        self.controller = Controller(
            f"{self.caller.client}/{hello.client_id}",
            name=hello.name,
            transport="datachannel",
            keepalive=True,
        )
        self._send(
            Welcome(
                telescope_id=self.telescope.id,
                role=self.caller.role.value,
                server_time_ms=time.time() * 1000,
                keepalive_ms=round(KEEPALIVE_S * 1000),
                deadman_ms=round(DEADMAN_S * 1000),
                lease=self._lease_message(),
            )
        )
        self._unsubscribe = self.lease.subscribe(lambda _: self._send(self._lease_message()))
        self._disconnected = self.lease.connected(self.controller.client)
        self._follower = self._spawn(self._follow(hello.telemetry_seq), "telemetry")

    def _lease_message(self) -> Lease:
        client = self.controller.client if self.controller is not None else ""
        return Lease(**control_state(self.lease, client).model_dump())

    # -- commands ---------------------------------------------------------------------------------

    def _on_command(self, request: CommandRequest) -> None:
        assert self.controller is not None
        if request.deadline_ms is not None and time.time() * 1000 > request.deadline_ms:
            self._reject(
                request.id,
                CommandFailure(
                    "Too late",
                    "the command arrived after its deadline",
                    kind=ProblemKind.EXPIRED,
                    outcome="not_run",
                ),
            )
            return
        if "type" in request.params:
            self._reject(request.id, _invalid("`params` has no `type`: it is `name`"))
            return
        try:
            command = COMMAND_ADAPTER.validate_python({**request.params, "type": request.name})
        except ValidationError as exc:
            self._reject(
                request.id,
                _invalid(message_detail(exc, "params"), message_errors(exc, "params")),
            )
            return
        try:
            admission = self.commands.submit(
                self.telescope.id,
                command,
                client=self.caller.client,
                role=self.caller.role,
                idempotency_key=request.id,
                controller=self.controller,
                who=self.caller.name,
            )
        except CommandFailure as exc:
            self._reject(request.id, exc)
            return
        self._send(Ack(id=request.id, accepted=True))
        self._spawn(self._deliver(request.id, admission.outcome), f"result-{request.id[:8]}")

    def _reject(self, command_id: str, failure: CommandFailure) -> None:
        self._send(Ack(id=command_id, accepted=False, problem=command_problem(failure)))

    async def _deliver(self, command_id: str, outcome: asyncio.Future[Any]) -> None:
        try:
            ack = await asyncio.shield(outcome)
        except CommandFailure as exc:
            self._send(Result(id=command_id, ok=False, problem=command_problem(exc)))
        else:
            self._send(Result(id=command_id, ok=True, ack=ack))

    # -- the lease --------------------------------------------------------------------------------

    def _on_lease(self, request: LeaseRequest) -> None:
        assert self.controller is not None
        if not self.caller.may_command:
            raise _BadMessage(
                _problem(
                    ProblemKind.FORBIDDEN.value,
                    "Forbidden",
                    403,
                    VIEWERS_DO_NOT_CONTROL,
                ),
                "lease",
            )
        who = self.controller
        match request.action:
            case "take":
                try:
                    take_control(self.lease, who)
                except CommandFailure as exc:
                    raise _BadMessage(command_problem(exc), "lease") from None
            case "request":
                self._spawn(self._request_lease(who), "lease-request")
            case "release":
                self.lease.release(who.client)
            case "grant" | "deny":
                self.lease.answer(who.client, request.action == "grant")
        self._send(self._lease_message())

    async def _request_lease(self, who: Controller) -> None:
        await self.lease.request(who)
        self._send(self._lease_message())

    # -- renegotiation ----------------------------------------------------------------------------

    def _on_offer(self, offer: Renegotiate) -> None:
        if self._renegotiate is None:
            raise _BadMessage(
                _problem("unsupported", "Not here", 501, "offers are not taken here"), "offer"
            )
        self._spawn(self._answer(offer), "renegotiate")

    async def _answer(self, offer: Renegotiate) -> None:
        assert self._renegotiate is not None
        try:
            session_id, answer = await self._renegotiate(offer, self)
        except NegotiationError as exc:
            self._error(negotiation_problem(exc), "offer")
            return
        self._send(RenegotiateAnswer(sdp=answer, session_id=session_id))

    # -- telemetry --------------------------------------------------------------------------------

    async def _follow(self, after_seq: int | None) -> None:
        """Telemetry, progress and events from the hub, for as long as the endpoint lives."""
        stream = self.telemetry.messages(after_seq)
        self._telemetry_seq = after_seq  # what the client has applied, when it resumes
        pending: asyncio.Future[TelemetryMessage] | None = None
        next_snapshot = time.monotonic() + SNAPSHOT_INTERVAL_S
        sent_to = -1  # deltas up to this seq are in a snapshot already sent
        stale = False  # deltas were dropped: a snapshot is owed
        try:
            while not self._closed:
                pending = pending or asyncio.ensure_future(anext(stream))
                waiters: set[asyncio.Future[Any]] = {pending}
                resync = None
                if not self._resync.is_set():
                    resync = asyncio.ensure_future(self._resync.wait())
                    waiters.add(resync)
                timeout = max(0.0, next_snapshot - time.monotonic())
                try:
                    done, _ = await asyncio.wait(
                        waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    if resync is not None:
                        resync.cancel()
                channel = self.status or self.control
                due = time.monotonic() >= next_snapshot
                if self._resync.is_set() or due or stale:
                    if self._backed_up(channel):
                        stale = True
                        next_snapshot = time.monotonic() + DRAIN_POLL_S
                    else:
                        self._resync.clear()
                        snapshot = self.telemetry.snapshot()
                        self._telemetry(snapshot, channel)
                        sent_to, stale = snapshot.seq, False
                        next_snapshot = time.monotonic() + SNAPSHOT_INTERVAL_S
                if pending not in done:
                    continue
                message, pending = pending.result(), None
                if message.kind == "operation":
                    self._send(Progress(operation=Operation.model_validate(message.data)))
                elif message.kind == "event":
                    self._send(FirmwareEvent(event=message.data))
                elif message.seq > sent_to:
                    if self._backed_up(channel):
                        stale = True  # latest wins: a snapshot once the channel drains
                    else:
                        self._telemetry(message, channel)
                        sent_to = message.seq
        except StopAsyncIteration:
            pass
        finally:
            if pending is not None:
                pending.cancel()
            with contextlib.suppress(Exception):
                await stream.aclose()

    def _telemetry(self, message: TelemetryMessage, channel: RTCDataChannel | None) -> None:
        """Send a snapshot or a delta; a delta names the telemetry message sent before it."""
        if message.kind == "snapshot":
            sent = Telemetry(seq=message.seq, kind="snapshot", prev=None, data=message.data)
        else:
            sent = Telemetry(
                seq=message.seq, kind="delta", prev=self._telemetry_seq, data=message.data
            )
        self._send(sent, channel)
        self._telemetry_seq = message.seq

    @staticmethod
    def _backed_up(channel: RTCDataChannel | None) -> bool:
        return channel is not None and channel.bufferedAmount > BUFFERED_HIGH

    # -- life -------------------------------------------------------------------------------------

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"dc-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _close_with_peer(self) -> None:
        await self.peer.closed.wait()
        self.close()

    def close(self) -> None:
        """The connection is gone. The lease stays until its holder's silence ends it (the
        client may come back on a new connection); a running move's deadman still watches."""
        if self._closed:
            return
        self._closed = True
        if self._disconnected is not None:
            self._disconnected()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._follower is not None:
            self._follower.cancel()


def _ref(data: dict[str, Any]) -> str | None:
    value = data.get("id", data.get("type"))
    return value[:64] if isinstance(value, str) else None


def _invalid(detail: str, errors: list[dict[str, str]] | None = None) -> CommandFailure:
    return CommandFailure(
        "Invalid command", detail, kind=ProblemKind.INVALID, outcome="not_run", errors=errors
    )
