"""The simulator's control port (4700/tcp): JSON lines in, replies and broadcast events out.

Owns the sockets and the firmware's transport rules: the Version event on connect, the "verify"
marker rules by firmware, the login gate on 7.32+, the idle cut after ~15.5 s of silence, and the
injected faults. What a request does is `SimulatedTelescope`'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from scopelink.seestar import verify
from scopelink.seestar.errors import ProtocolError
from scopelink.seestar.framing import LineBuffer
from scopelink.seestar.messages import AUTH_METHODS, encode_json_line, parse_request, response_dict
from scopelink.settings import FIRMWARE_IDLE_CUT_S
from scopelink.simulator.faults import Faults, write_with_faults
from scopelink.simulator.firmware import ConnectionInfo, FirmwareError
from scopelink.simulator.telescope import SimulatedTelescope

log = logging.getLogger(__name__)

#: Lines waiting for one client; a client that falls this far behind is disconnected.
MAX_OUTGOING_LINES = 4096
MALFORMED_LINE = b'{"Event":"PiStatus","Timestamp":"1.0",temp:}\r\n'


class _Client:
    """One control connection."""

    def __init__(self, writer: asyncio.StreamWriter, generation: int) -> None:
        self.writer = writer
        self.generation = generation
        self.info = ConnectionInfo()
        self.outgoing: deque[bytes] = deque()
        self.wakeup = asyncio.Event()
        self.closed = False

    def enqueue(self, line: bytes) -> None:
        if self.closed:
            return
        if len(self.outgoing) >= MAX_OUTGOING_LINES:
            log.warning("control client too slow; disconnecting it")
            self.close()
            return
        self.outgoing.append(line)
        self.wakeup.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.writer.close()
            self.wakeup.set()


class ControlServer:
    """Serves `SimulatedTelescope` on the control port to any number of clients."""

    def __init__(
        self,
        telescope: SimulatedTelescope,
        host: str = "127.0.0.1",
        port: int = 4700,
        *,
        faults: Faults | None = None,
        idle_cut_s: float = FIRMWARE_IDLE_CUT_S,
    ) -> None:
        self.telescope = telescope
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.idle_cut_s = idle_cut_s
        self._server: asyncio.Server | None = None
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._watcher = asyncio.create_task(self._watch_drops(), name="sim-control-drops")

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._watcher is not None:
            self._watcher.cancel()
        for client in list(self._clients):
            client.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    def broadcast(self, message: dict[str, Any]) -> None:
        """Send an event line to every connected client (the firmware broadcasts events)."""
        line = encode_json_line(message)
        for client in list(self._clients):
            client.enqueue(line)

    async def _watch_drops(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            for client in list(self._clients):
                if client.generation < self.faults.drop_generation:
                    log.info("fault: dropping a control connection")
                    client.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        client = _Client(writer, self.faults.drop_generation)
        self._clients.add(client)
        self.telescope.clients = len(self._clients)
        sender = asyncio.create_task(self._send_loop(client), name="sim-control-send")
        client.enqueue(encode_json_line(self.telescope.version_event(client.info.verified)))
        try:
            await self._read_loop(reader, client)
        except (OSError, ConnectionError):
            pass  # the client went away; nothing to answer
        finally:
            client.close()
            self._clients.discard(client)
            self.telescope.clients = len(self._clients)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            self._tasks.discard(task)

    async def _read_loop(self, reader: asyncio.StreamReader, client: _Client) -> None:
        lines = LineBuffer()
        while not client.closed:
            try:
                data = await asyncio.wait_for(reader.read(65536), self.idle_cut_s)
            except TimeoutError:
                log.info("idle cut: no traffic for %.1f s", self.idle_cut_s)
                return
            if not data:
                return
            for line in lines.feed(data):
                await self.faults.wait_if_stalled()
                await self._handle_line(line, client)

    async def _handle_line(self, line: bytes, client: _Client) -> None:
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            log.debug("ignoring a malformed request: %s", exc)
            return
        profile = self.telescope.profile
        if profile.login_required and not client.info.verified:
            if request.method not in AUTH_METHODS:
                log.debug("ignoring %s before login", request.method)
                return
        uptime = self.telescope.uptime
        try:
            params = self._check_verify(request.method, request.params)
            result = self.telescope.handle(request.method, params, client.info)
            reply = response_dict(request, uptime(), result)
        except FirmwareError as exc:
            reply = response_dict(request, uptime(), code=exc.code, error=exc.text)
        except Exception:
            log.exception("simulator failed on %s", request.method)
            reply = response_dict(request, uptime(), code=207, error="fail to operate")
        if self.faults.reply_delay_s > 0:
            await asyncio.sleep(self.faults.reply_delay_s)
        client.enqueue(encode_json_line(reply))

    def _check_verify(self, method: str, params: Any) -> Any:
        """Strip the "verify" marker, refusing the shapes this firmware rejects."""
        if self.telescope.profile.rejects_object_verify and method not in AUTH_METHODS:
            if isinstance(params, dict) and "verify" in params:
                raise FirmwareError(109, "unexpected param")
            if (
                isinstance(params, list)
                and len(params) == 2
                and isinstance(params[0], dict)
                and params[1] == "verify"
            ):
                raise FirmwareError(107, "expected object param")
        stripped, _ = verify.strip_verify(params)
        return stripped

    async def _send_loop(self, client: _Client) -> None:
        faults = self.faults
        while not client.closed:
            await client.wakeup.wait()
            client.wakeup.clear()
            if faults.coalesce_writes:
                await asyncio.sleep(0.02)  # let several lines gather into one write
            while client.outgoing and not client.closed:
                if faults.coalesce_writes:
                    chunk = b"".join(client.outgoing)
                    client.outgoing.clear()
                else:
                    chunk = client.outgoing.popleft()
                if faults.malformed_rate and faults.rng.random() < faults.malformed_rate:
                    chunk = MALFORMED_LINE + chunk
                try:
                    await write_with_faults(client.writer, chunk, faults)
                except (OSError, ConnectionError):
                    client.close()
                    return
