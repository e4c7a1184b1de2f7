"""The data-channel protocol (docs/protocol.md), defined once: commands, acknowledgements,
results, progress, telemetry, the control lease, clocks and protocol errors.

Every message is one JSON object with `v` (the protocol version, `PROTOCOL_VERSION`) and a
`type`. The server validates what a client sends with `CLIENT_MESSAGE` (strictly) and sends the
server models as `model_dump_json()`; `ui/types/protocol.d.ts` is generated from these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from scopelink.schema.operations import Operation
from scopelink.schema.state import CommandAck, ControlState, Problem

#: The protocol version this server speaks; a message with another `v` is refused.
PROTOCOL_VERSION = 1
#: The data channels a client opens, by label (docs/protocol.md, "Channels").
CONTROL_CHANNEL = "control"
TELEMETRY_CHANNEL = "telemetry"
#: The largest message either side sends (aiortc's SCTP `max-message-size` is 64 KiB).
MAX_MESSAGE_BYTES = 64 * 1024


class _FromClient(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    v: Literal[1]


# -- client → server -------------------------------------------------------------------------


class Hello(_FromClient):
    """Opens the protocol on the control channel; the server answers `welcome`."""

    type: Literal["hello"]
    #: The client's own id, the same across reconnects (a tab keeps it for its life): command
    #: ids are remembered per client, and the control lease is held by a client.
    client_id: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    #: The last telemetry `seq` this client applied, to resume after a reconnect (deltas from
    #: there when the server still has them, else a snapshot); null: start from a snapshot.
    telemetry_seq: int | None = Field(default=None, ge=0)
    #: A name to show other users while this client holds control.
    name: str | None = Field(default=None, max_length=64)


class CommandRequest(_FromClient):
    """Run a command once. `id` is its idempotency key: sending the same id again (a retry,
    also on a new connection) runs nothing new and gets the same ack and result."""

    type: Literal["command"]
    id: str = Field(min_length=1, max_length=64)
    #: The command's `type` in the REST API (`goto`, `move`, …).
    name: str = Field(min_length=1, max_length=32)
    #: The REST command's body without `type`.
    params: dict[str, Any] = Field(default_factory=dict)
    #: Epoch ms after which the command must not start (an offline queue's goto); a command
    #: that arrives later is rejected, not run.
    deadline_ms: int | None = Field(default=None, ge=0)


class Ping(_FromClient):
    """A keepalive and clock probe; the server answers `pong` at once. A client holding the
    control lease sends one at least every `Welcome.keepalive_ms`."""

    type: Literal["ping"]
    #: The client's clock when sent (ms, any origin), echoed in the pong.
    t: float


class LeaseRequest(_FromClient):
    """The control lease: `take` it (free, or already ours), `request` it from its holder (who is
    asked, and has `Lease.handover_timeout_ms` to answer), `release` it, or answer a request for
    it with `grant` or `deny`."""

    type: Literal["lease"]
    action: Literal["take", "request", "release", "grant", "deny"]


class Resync(_FromClient):
    """Ask for a telemetry snapshot now (the client saw a gap in the deltas' `seq`)."""

    type: Literal["resync"]


class Renegotiate(_FromClient):
    """A new SDP offer for this peer connection, over the data channel (no signaling socket
    needed once the channel is open); answered with `answer`."""

    type: Literal["offer"]
    sdp: str = Field(max_length=60_000)
    #: The tier to watch on the new connection; the full tier when left out.
    tier: Literal["full", "reduced"] | None = None


ClientMessage = Annotated[
    Hello | CommandRequest | Ping | LeaseRequest | Resync | Renegotiate,
    Field(discriminator="type"),
]
CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("hello", "command", "ping", "lease", "resync", "offer")


# -- server → client -------------------------------------------------------------------------


class _FromServer(BaseModel):
    v: Literal[1] = 1


class Lease(ControlState, _FromServer):
    """The control lease's state, sent to each client of the telescope when it changes."""

    type: Literal["lease"] = "lease"


class Welcome(_FromServer):
    """The answer to `hello`."""

    type: Literal["welcome"] = "welcome"
    telescope_id: str
    role: str
    #: The server's clock (epoch ms), for deadlines.
    server_time_ms: float
    #: A client holding the lease sends a message (a `ping`) at least this often.
    keepalive_ms: int
    #: While a `move` runs, the mount stops when its sender is silent this long.
    deadman_ms: int
    lease: Lease


class Ack(_FromServer):
    """A command was taken (it will run, or is the retry of one that did) or rejected (it will
    not run: `problem` says why)."""

    type: Literal["ack"] = "ack"
    id: str
    accepted: bool
    problem: Problem | None = None


class Result(_FromServer):
    """How a command ended: `ack` (the REST answer: completed, or accepted as an operation whose
    `progress` follows) or `problem` (its `outcome`: `not_run` or `unknown`)."""

    type: Literal["result"] = "result"
    id: str
    ok: bool
    ack: CommandAck | None = None
    problem: Problem | None = None


class Progress(_FromServer):
    """An operation changed (a goto's progress, its end)."""

    type: Literal["progress"] = "progress"
    operation: Operation


class FirmwareEvent(_FromServer):
    """A telescope event worth logging, as the telescope sent it."""

    type: Literal["event"] = "event"
    event: dict[str, Any]


class Telemetry(_FromServer):
    """The telescope's state: a `snapshot` (the whole `TelescopeState`), then `delta`s
    (`{section: {field: value}}`). Each delta names the message before it (`prev`): a client
    applies a delta only when `prev` is the last `seq` it applied, and otherwise waits for the
    next snapshot (one comes every `SNAPSHOT_INTERVAL_S`) or sends `resync`."""

    type: Literal["telemetry"] = "telemetry"
    seq: int
    kind: Literal["snapshot", "delta"]
    #: For a delta: the `seq` of the telemetry message before it on this stream; null for a
    #: snapshot (which replaces everything).
    prev: int | None
    data: dict[str, Any]


class Pong(_FromServer):
    type: Literal["pong"] = "pong"
    #: The ping's `t`, echoed.
    t: float
    #: The server's clock when it answered (epoch ms).
    server_time_ms: float


class RenegotiateAnswer(_FromServer):
    """The answer to an `offer` sent over the data channel: a new peer connection (its own
    data channels, its own `hello`); the client closes the old one once the new one plays."""

    type: Literal["answer"] = "answer"
    sdp: str
    session_id: str


class ProtocolError(_FromServer):
    """A message the server could not take (not JSON, unknown version or type, malformed,
    too large); nothing ran. The channel stays open."""

    type: Literal["error"] = "error"
    problem: Problem
    #: The offending message's `id` or `type`, when it could be read.
    ref: str | None = None


ServerMessage = Annotated[
    Welcome
    | Ack
    | Result
    | Progress
    | FirmwareEvent
    | Telemetry
    | Lease
    | Pong
    | RenegotiateAnswer
    | ProtocolError,
    Field(discriminator="type"),
]
