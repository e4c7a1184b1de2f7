"""The simulated camera's RTSP server (4554/tcp, path /stream; 4555 for the S30's wide camera).

RTSP/1.0 (RFC 2326) for one H.264 track, as a player needs it: OPTIONS, DESCRIBE (SDP), SETUP
with RTP over the RTSP connection (`RTP/AVP/TCP;interleaved=`) or over UDP
(`RTP/AVP;unicast;client_port=`, sent from one server socket pair), PLAY, PAUSE, TEARDOWN and
GET_PARAMETER as a keepalive. Errors: 454 unknown session, 455 a method the session's state does
not allow, 459 SETUP on the aggregate URL, 461 a transport we do not serve, 404 another path,
503 (with Retry-After) while the view stage is not RTSP, 501 an unknown method.

A session belongs to the connection that set it up and ends with it. Every playing session reads
the newest frame of the shared `LiveVideo`; one whose previous frame has not drained (TCP: the
socket buffer; UDP: the server socket's send queue) skips to the next IDR, so a slow viewer never
delays the others or builds a queue. When the stage leaves RTSP, sessions get an RTCP BYE and
their connections are closed, as a camera that stops streaming does. `Faults`: a stall holds
replies and RTP; a drop aborts every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from scopelink.media.latest import SlotClosedError
from scopelink.simulator import rtp
from scopelink.simulator.faults import Faults
from scopelink.simulator.live_video import EncodedFrame, LiveVideo

log = logging.getLogger(__name__)

PATH = "/stream"
TRACK = "trackID=0"
SESSION_TIMEOUT_S = 60
SERVER = "scopelink-simulator"
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER"
#: A request head larger than this is refused (400) and the connection closed.
MAX_HEAD_BYTES = 16384
_WATCH_S = 0.05
#: The kernel's send buffer per connection, in seconds of video at the bitrate: what a player
#: that stops reading can have waiting for it (Linux's default grows to 4 MB: 5 s at 6 Mbit/s).
SEND_BUFFER_S = 0.25
_SR_INTERVAL_S = 1.0

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    459: "Aggregate Operation Not Allowed",
    461: "Unsupported Transport",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "RTSP Version Not Supported",
}


class SessionState(enum.Enum):
    """RFC 2326's server states for a player: SETUP -> READY, PLAY -> PLAYING, PAUSE -> READY."""

    READY = "ready"
    PLAYING = "playing"


@dataclass(slots=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(slots=True)
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def encode(self, cseq: str | None) -> bytes:
        lines = [f"RTSP/1.0 {self.status} {REASONS.get(self.status, 'Error')}"]
        if cseq is not None:
            lines.append(f"CSeq: {cseq}")
        lines.append(f"Server: {SERVER}")
        lines.extend(f"{k}: {v}" for k, v in self.headers.items())
        if self.body:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


class RtspError(Exception):
    """A request answered with an error status."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {REASONS.get(status, '')}")
        self.status = status
        self.headers = headers or {}


@dataclass(eq=False, slots=True)
class _Connection:
    writer: asyncio.StreamWriter
    generation: int
    sessions: set[_Session] = field(default_factory=set)

    def abort(self) -> None:
        self.writer.transport.abort()


@dataclass(eq=False, slots=True)
class _Session:
    id: str
    conn: _Connection
    ssrc: int
    #: TCP: (rtp channel, rtcp channel); UDP: None.
    channels: tuple[int, int] | None = None
    #: UDP: the client's (host, rtp port) and (host, rtcp port).
    rtp_addr: tuple[str, int] | None = None
    rtcp_addr: tuple[str, int] | None = None
    state: SessionState = SessionState.READY
    seq: int = field(default_factory=lambda: random.randrange(1 << 16))
    ts_offset: int = field(default_factory=lambda: random.randrange(1 << 32))
    packets: int = 0
    octets: int = 0
    frames_sent: int = 0
    frames_skipped: int = 0
    #: Sequence number (in the video's LatestValue) of the last frame the sender took.
    taken: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    sender: asyncio.Task[None] | None = None
    last_frame: EncodedFrame | None = None

    @property
    def udp(self) -> bool:
        return self.channels is None


@dataclass(frozen=True, slots=True)
class AccessInfo:
    """One session as tests and benchmarks see it."""

    id: str
    transport: str
    state: SessionState
    frames_sent: int
    frames_skipped: int
    #: Frames published since the one this session last took (a hung player's backlog that is
    #: never queued: it will skip to the next IDR).
    frames_behind: int
    #: Bytes waiting in our socket buffer for this player.
    write_buffer: int


@dataclass(slots=True)
class RtspServerStats:
    connections: int = 0
    requests: int = 0
    sessions: int = 0
    frames_sent: int = 0
    #: Frames a session missed because its previous frame had not drained (it then waits for
    #: an IDR).
    frames_skipped: int = 0


class _RtcpProtocol(asyncio.DatagramProtocol):
    """The server's RTCP socket: receiver reports keep UDP sessions alive."""

    def __init__(self, server: RtspServer) -> None:
        self._server = server

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._server._touch_udp((str(addr[0]), int(addr[1])))


class RtspServer:
    """Serves one `LiveVideo` at rtsp://host:port/stream while `available()` says so."""

    def __init__(
        self,
        host: str,
        port: int,
        video: LiveVideo,
        *,
        faults: Faults,
        available: Callable[[], bool],
        mode: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.video = video
        self.faults = faults
        self._available = available
        self._mode = mode
        self.session_timeout_s: float = SESSION_TIMEOUT_S
        self.stats = RtspServerStats()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._sessions: dict[str, _Session] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._warming: set[asyncio.Task[None]] = set()
        self._rtp_transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self.server_ports: tuple[int, int] = (0, 0)

    # -- lifecycle --------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}{PATH}"

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def sessions(self) -> list[AccessInfo]:
        latest = self.video.frames.seq
        return [
            AccessInfo(
                id=s.id,
                transport="udp" if s.udp else "tcp",
                state=s.state,
                frames_sent=s.frames_sent,
                frames_skipped=s.frames_skipped,
                frames_behind=latest - s.taken if s.state is SessionState.PLAYING else 0,
                write_buffer=s.conn.writer.transport.get_write_buffer_size(),
            )
            for s in self._sessions.values()
        ]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self._requested_port)
        await self._bind_udp()
        self._watcher = asyncio.create_task(self._watch(), name="sim-rtsp-watch")
        log.info("RTSP simulator on %s", self.url)

    async def _bind_udp(self) -> None:
        """An even RTP port and the odd one above it for RTCP, as RFC 3550 suggests."""
        loop = asyncio.get_running_loop()
        for _ in range(20):
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind((self.host, 0))
                port = probe.getsockname()[1] & ~1
            finally:
                probe.close()
            try:
                rtp_t, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=(self.host, port)
                )
            except OSError:
                continue
            try:
                rtcp_t, _ = await loop.create_datagram_endpoint(
                    lambda: _RtcpProtocol(self), local_addr=(self.host, port + 1)
                )
            except OSError:
                rtp_t.close()
                continue
            self._rtp_transport, self._rtcp_transport = rtp_t, rtcp_t
            self.server_ports = (port, port + 1)
            return
        raise OSError("no free UDP port pair for RTP and RTCP")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self._warming:
            await asyncio.wait(self._warming)  # a worker thread cannot be cancelled
        for session in list(self._sessions.values()):
            self._end_session(session)
        for conn in list(self._connections):
            conn.abort()
        handlers = set(self._handlers)
        if handlers:
            _, stuck = await asyncio.wait(handlers, timeout=1.0)
            for task in stuck:
                task.cancel()
            if stuck:
                await asyncio.wait(stuck)
        for transport in (self._rtp_transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _watch(self) -> None:
        """Drops, the end of the RTSP stage, idle sessions; and drawing a new mode's picture."""
        warmed: str | None = None
        while True:
            await asyncio.sleep(_WATCH_S)
            generation = self.faults.drop_generation
            for conn in list(self._connections):
                if conn.generation != generation:
                    log.info("fault: dropping an RTSP connection")
                    conn.abort()
            available = self._available()
            if not available:
                for conn in [c for c in self._connections if c.sessions]:
                    self._close_with_bye(conn)
            else:
                mode = self._mode()
                if mode is not None and mode != warmed:
                    warmed = mode
                    # In the background: drops and the stage's end must not wait for a drawing.
                    task = asyncio.create_task(self.video.warm(mode), name="sim-rtsp-warm")
                    self._warming.add(task)
                    task.add_done_callback(self._warming.discard)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if now - session.last_seen > self.session_timeout_s:
                    log.info("RTSP session %s timed out", session.id)
                    self._end_session(session)

    def _close_with_bye(self, conn: _Connection) -> None:
        """The stream is over: BYE on every session, then close (flushing what was written)."""
        for session in list(conn.sessions):
            with contextlib.suppress(Exception):
                self._send_rtcp(session, self._bye(session))
            self._end_session(session)
        conn.writer.close()

    # -- connections ------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        conn = _Connection(writer, self.faults.drop_generation)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            size = max(65536, int(self.video.settings.bitrate / 8 * SEND_BUFFER_S))
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
        self._connections.add(conn)
        self.stats.connections += 1
        try:
            while True:
                request = await self._read_request(reader, conn)
                if request is None:
                    break
                await self.faults.wait_if_stalled()
                self.stats.requests += 1
                response = self._respond(conn, request)
                writer.write(response.encode(request.header("cseq")))
                await writer.drain()
                if request.method == "PLAY" and response.status == 200:
                    # RTP starts only after the PLAY reply is on the wire.
                    played = self._sessions.get(response.headers["Session"].split(";")[0])
                    if played is not None:
                        self._start_sending(played)
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            log.debug("RTSP simulator: client gone: %s", exc)
        except _BadRequest as exc:
            with contextlib.suppress(ConnectionError, OSError):
                writer.write(Response(exc.status).encode(None))
                await writer.drain()
        except asyncio.CancelledError:
            log.debug("RTSP simulator: connection handler cancelled")
        finally:
            for session in list(conn.sessions):
                self._end_session(session)
            self._connections.discard(conn)
            conn.abort()
            self._handlers.discard(task)

    async def _read_request(
        self, reader: asyncio.StreamReader, conn: _Connection
    ) -> Request | None:
        """The next request; interleaved data from the client (RTCP receiver reports) is read
        and taken as a sign of life."""
        while True:
            first = await reader.read(1)
            if not first:
                return None
            if first == b"$":
                head = await reader.readexactly(3)
                await reader.readexactly(int.from_bytes(head[1:3], "big"))
                for session in conn.sessions:
                    session.last_seen = time.monotonic()
                continue
            if first in b"\r\n":
                continue  # stray line ends between requests
            break
        try:
            head = first + await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _BadRequest(400) from None
        if len(head) > MAX_HEAD_BYTES:
            raise _BadRequest(400)
        lines = head.decode("utf-8", "replace").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise _BadRequest(400)
        method, url, version = parts
        if version != "RTSP/1.0":
            raise _BadRequest(505)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise _BadRequest(400)
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        body = await reader.readexactly(length) if length > 0 else b""
        return Request(method.upper(), url, headers, body)

    # -- requests ---------------------------------------------------------------------------------

    def _respond(self, conn: _Connection, request: Request) -> Response:
        if request.header("cseq") is None:
            return Response(400)
        handler = {
            "OPTIONS": self._options,
            "DESCRIBE": self._describe,
            "SETUP": self._setup,
            "PLAY": self._play,
            "PAUSE": self._pause,
            "TEARDOWN": self._teardown,
            "GET_PARAMETER": self._get_parameter,
        }.get(request.method)
        try:
            if handler is None:
                if request.method in ("ANNOUNCE", "RECORD", "SET_PARAMETER", "REDIRECT"):
                    # A camera takes no stream and no parameters from a player.
                    raise RtspError(405, {"Allow": PUBLIC})
                raise RtspError(501)
            return handler(conn, request)
        except RtspError as exc:
            return Response(exc.status, exc.headers)

    def _path(self, request: Request) -> tuple[str, str]:
        """(presentation path, track part) of the request URL; 404 for anything but /stream."""
        path = urlsplit(request.url).path.rstrip("/") if request.url != "*" else ""
        if path == PATH:
            return PATH, ""
        if path == f"{PATH}/{TRACK}":
            return PATH, TRACK
        raise RtspError(404)

    def _require_stream(self) -> None:
        if not self._available():
            # The path is right, the camera is not in a video stage now: come back later.
            raise RtspError(503, {"Retry-After": "5"})

    def _session(self, request: Request, *, required: bool = True) -> _Session | None:
        value = request.header("session")
        if value is None:
            if required:
                raise RtspError(454)
            return None
        session = self._sessions.get(value.split(";")[0].strip())
        if session is None:
            raise RtspError(454)
        session.last_seen = time.monotonic()
        return session

    def _session_header(self, session: _Session) -> str:
        return f"{session.id};timeout={max(1, round(self.session_timeout_s))}"

    def _options(self, conn: _Connection, request: Request) -> Response:
        self._session(request, required=False)
        return Response(200, {"Public": PUBLIC})

    def _describe(self, conn: _Connection, request: Request) -> Response:
        _, track = self._path(request)
        if track:
            raise RtspError(404)
        self._require_stream()
        base = urlsplit(request.url)
        content_base = f"rtsp://{base.netloc}{PATH}/"
        return Response(
            200,
            {"Content-Type": "application/sdp", "Content-Base": content_base},
            self.sdp(base.hostname or self.host).encode(),
        )

    def sdp(self, host: str) -> str:
        """The session description: one H.264 video track, payload type 96."""
        ps = self.video.parameter_sets
        assert ps is not None, "start() the LiveVideo first"
        s = self.video.settings
        fps = f"{s.fps:g}"
        return "\r\n".join(
            [
                "v=0",
                f"o=- {random.randrange(1 << 31)} 1 IN IP4 {host}",
                "s=Seestar live view",
                f"c=IN IP4 {host}",
                "t=0 0",
                "a=control:*",
                "a=range:npt=now-",
                "m=video 0 RTP/AVP 96",
                f"b=AS:{s.bitrate // 1000}",
                "a=rtpmap:96 H264/90000",
                f"a=fmtp:96 packetization-mode=1;profile-level-id={ps.profile_level_id};"
                f"sprop-parameter-sets={ps.sprop}",
                f"a=framerate:{fps}",
                f"a=framesize:96 {s.width}-{s.height}",
                f"a=control:{TRACK}",
                "",
            ]
        )

    def _setup(self, conn: _Connection, request: Request) -> Response:
        _, track = self._path(request)
        if not track:
            raise RtspError(459)
        self._require_stream()
        session = self._session(request, required=False)
        if session is not None and session.state is SessionState.PLAYING:
            raise RtspError(455)  # no transport change while playing
        transport = request.header("transport") or ""
        reply: str | None = None
        channels: tuple[int, int] | None = None
        client_ports: tuple[int, int] | None = None
        for option in transport.split(","):
            fields = [f.strip() for f in option.split(";")]
            params = dict(f.partition("=")[::2] for f in fields[1:])
            spec = fields[0].upper()
            if "multicast" in params:
                continue
            if spec == "RTP/AVP/TCP" and "interleaved" in params:
                channels = _pair(params["interleaved"])
                if channels is None or max(channels) > 255:
                    continue
                reply = f"RTP/AVP/TCP;unicast;interleaved={channels[0]}-{channels[1]}"
                break
            if spec in ("RTP/AVP", "RTP/AVP/UDP") and "client_port" in params:
                client_ports = _pair(params["client_port"])
                if client_ports is None:
                    continue
                lo, hi = self.server_ports
                reply = (
                    f"RTP/AVP;unicast;client_port={client_ports[0]}-{client_ports[1]};"
                    f"server_port={lo}-{hi}"
                )
                break
        if reply is None:
            raise RtspError(461)
        if session is None:
            session = _Session(secrets.token_hex(8), conn, random.randrange(1 << 32))
            self._sessions[session.id] = session
            conn.sessions.add(session)
            self.stats.sessions += 1
        session.channels = channels
        if client_ports is not None:
            peer = conn.writer.get_extra_info("peername")[0]
            session.rtp_addr = (peer, client_ports[0])
            session.rtcp_addr = (peer, client_ports[1])
        return Response(
            200,
            {
                "Transport": f"{reply};ssrc={session.ssrc:08X}",
                "Session": self._session_header(session),
            },
        )

    def _play(self, conn: _Connection, request: Request) -> Response:
        self._path(request)
        session = self._session(request)
        assert session is not None
        self._require_stream()
        if session.state is not SessionState.PLAYING:
            session.state = SessionState.PLAYING
        rtptime = (self.video.clock() + session.ts_offset) & 0xFFFFFFFF
        track_url = f"rtsp://{urlsplit(request.url).netloc}{PATH}/{TRACK}"
        return Response(
            200,
            {
                "Session": self._session_header(session),
                "Range": "npt=now-",
                "RTP-Info": f"url={track_url};seq={session.seq};rtptime={rtptime}",
            },
        )

    def _pause(self, conn: _Connection, request: Request) -> Response:
        self._path(request)
        session = self._session(request)
        assert session is not None
        self._stop_sending(session)
        session.state = SessionState.READY
        return Response(200, {"Session": self._session_header(session)})

    def _teardown(self, conn: _Connection, request: Request) -> Response:
        self._path(request)
        session = self._session(request)
        assert session is not None
        self._end_session(session)
        return Response(200)

    def _get_parameter(self, conn: _Connection, request: Request) -> Response:
        session = self._session(request, required=False)
        headers = {"Session": self._session_header(session)} if session else {}
        return Response(200, headers)

    # -- sessions ---------------------------------------------------------------------------------

    def _touch_udp(self, addr: tuple[str, int]) -> None:
        for session in self._sessions.values():
            if session.rtcp_addr == addr:
                session.last_seen = time.monotonic()

    def _start_sending(self, session: _Session) -> None:
        if session.sender is None and session.state is SessionState.PLAYING:
            self.video.acquire()
            session.sender = asyncio.create_task(self._send_loop(session), name="sim-rtsp-send")

    def _stop_sending(self, session: _Session) -> None:
        if session.sender is not None:
            session.sender.cancel()
            session.sender = None
            self.video.release()

    def _end_session(self, session: _Session) -> None:
        self._stop_sending(session)
        self._sessions.pop(session.id, None)
        session.conn.sessions.discard(session)

    async def _send_loop(self, session: _Session) -> None:
        try:
            await self._send_frames(session)
        except asyncio.CancelledError:
            raise
        except (ConnectionError, OSError) as exc:
            log.debug("RTSP simulator: sending failed: %s", exc)
            session.conn.abort()
        except SlotClosedError:
            pass
        except Exception:
            log.exception("RTSP simulator: sender failed")
            session.conn.abort()

    async def _send_frames(self, session: _Session) -> None:
        frames = self.video.frames
        taken = session.taken = frames.seq
        need_idr = True
        last_report = 0.0
        while True:
            item = await frames.next(taken)
            await self.faults.wait_if_stalled()
            latest = frames.latest
            assert latest is not None
            if latest.seq != taken + 1 and taken:
                # Frames went by while the last one drained (or during a stall): the decoder's
                # references are gone, so wait for the next IDR.
                missed = latest.seq - taken - 1
                session.frames_skipped += missed
                self.stats.frames_skipped += missed
                need_idr = True
            item = latest
            taken = session.taken = item.seq
            frame = item.value
            if need_idr and not frame.keyframe:
                continue
            need_idr = False
            await self._send_frame(session, frame)
            session.last_frame = frame
            session.frames_sent += 1
            self.stats.frames_sent += 1
            now = time.monotonic()
            if now - last_report >= _SR_INTERVAL_S:
                last_report = now
                self._send_rtcp(session, self._report(session, frame))

    async def _send_frame(self, session: _Session, frame: EncodedFrame) -> None:
        timestamp = frame.pts + session.ts_offset
        last = len(frame.payloads) - 1
        packets = []
        for i, payload in enumerate(frame.payloads):
            header = rtp.rtp_header(session.seq, timestamp, session.ssrc, i == last)
            packets.append(header + payload)
            session.seq = (session.seq + 1) & 0xFFFF
            session.packets += 1
            session.octets += len(payload)
        if session.channels is not None:
            channel = session.channels[0]
            writer = session.conn.writer
            writer.write(b"".join(_interleave(channel, p) for p in packets))
            await writer.drain()
            return
        transport = self._rtp_transport
        assert transport is not None and session.rtp_addr is not None
        for packet in packets:
            transport.sendto(packet, session.rtp_addr)
        # UDP has no back-pressure but our own send queue: let it empty before the next frame.
        while transport.get_write_buffer_size() > 0:
            await asyncio.sleep(0.002)

    def _report(self, session: _Session, frame: EncodedFrame) -> bytes:
        return rtp.sender_report(
            session.ssrc,
            frame.wall_s,
            frame.pts + session.ts_offset,
            session.packets,
            session.octets,
            SERVER,
        )

    def _bye(self, session: _Session) -> bytes:
        frame = session.last_frame
        wall = frame.wall_s if frame else time.time()
        ts = (frame.pts if frame else self.video.clock()) + session.ts_offset
        return rtp.bye(session.ssrc, session.packets, session.octets, wall, ts, SERVER)

    def _send_rtcp(self, session: _Session, packet: bytes) -> None:
        if session.channels is not None:
            session.conn.writer.write(_interleave(session.channels[1], packet))
        elif self._rtcp_transport is not None and session.rtcp_addr is not None:
            self._rtcp_transport.sendto(packet, session.rtcp_addr)


class _BadRequest(Exception):
    """A request we cannot parse: answer it and close the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _interleave(channel: int, packet: bytes) -> bytes:
    """RFC 2326 §10.12: `$`, the channel, a 16-bit length, the packet."""
    return b"$" + bytes((channel,)) + len(packet).to_bytes(2, "big") + packet


def _pair(text: str) -> tuple[int, int] | None:
    """`a-b` (or `a`, meaning a and a+1) as two ports or channels; None if malformed."""
    lo, _, hi = text.partition("-")
    try:
        first = int(lo)
        second = int(hi) if hi else first + 1
    except ValueError:
        return None
    if not (0 <= first <= 65535 and 0 <= second <= 65535):
        return None
    return first, second
