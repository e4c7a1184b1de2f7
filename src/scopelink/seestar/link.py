"""A TCP link that keeps itself up: connection states, reconnect with backoff, clean shutdown.

The control and imaging clients are both `ReconnectingLink`s; they supply what happens while
connected (`_run_session`) and what to fail when the link drops (`_on_disconnected`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable
from enum import StrEnum

from scopelink.seestar.errors import NotConnectedError, SeestarError
from scopelink.settings import Backoff

log = logging.getLogger(__name__)


class ConnectionState(StrEnum):
    """The observable state of a link."""

    CLOSED = "closed"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


#: Allowed transitions; anything else is a bug.
TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.CLOSED: frozenset({ConnectionState.CONNECTING}),
    ConnectionState.CONNECTING: frozenset(
        {ConnectionState.CONNECTED, ConnectionState.RECONNECTING, ConnectionState.CLOSED}
    ),
    ConnectionState.CONNECTED: frozenset({ConnectionState.RECONNECTING, ConnectionState.CLOSED}),
    ConnectionState.RECONNECTING: frozenset({ConnectionState.CONNECTED, ConnectionState.CLOSED}),
}

StateListener = Callable[[ConnectionState], None]

#: How long a connection may go unanswered before it counts as dead. A telescope that vanishes
#: (its Wi-Fi gone, its power cut) sends no FIN or RST: the kernel would retransmit for about
#: 15 minutes while the session waits on a read that never returns, and the live view stays
#: frozen. Keepalive probes (an idle link) and TCP_USER_TIMEOUT (unacknowledged data, such as
#: our own keepalive messages) end it after this long instead.
DEAD_PEER_S = 10.0


def detect_dead_peer(sock: socket.socket, seconds: float) -> None:
    """Make the kernel end `sock` after `seconds` without an answer from the other end."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    options = (
        ("TCP_KEEPIDLE", max(1, round(seconds / 2))),
        ("TCP_KEEPINTVL", max(1, round(seconds / 6))),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", max(1, round(seconds * 1000))),
    )
    for name, value in options:
        option = getattr(socket, name, None)  # Linux has them all; others keep their defaults
        if option is not None:
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


class ConnectionStates:
    """A connection's state, its allowed transitions (`TRANSITIONS`) and its listeners; every
    link to the telescope (control, imaging, RTSP video) keeps its state this one way."""

    name: str

    def __init__(self) -> None:
        self._state = ConnectionState.CLOSED
        self._listeners: list[StateListener] = []
        self._connected = asyncio.Event()

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    def add_state_listener(self, listener: StateListener) -> Callable[[], None]:
        """Call `listener(state)` on every change; returns a function that unsubscribes."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _where(self) -> str:
        """What the connection goes to, for the log."""
        return ""

    def _entered(self, new: ConnectionState) -> None:
        """Called on every change, before the listeners hear of it."""

    def _set_state(self, new: ConnectionState) -> None:
        if new is self._state:
            return
        if new not in TRANSITIONS[self._state]:
            raise RuntimeError(f"{self.name}: illegal transition {self._state} -> {new}")
        log.info("%s %s %s -> %s", self.name, self._where(), self._state, new)
        self._state = new
        if new is ConnectionState.CONNECTED:
            self._connected.set()
        else:
            self._connected.clear()
        self._entered(new)
        for listener in list(self._listeners):
            try:
                listener(new)
            except Exception:
                log.exception("%s: state listener failed", self.name)


class ReconnectingLink(ConnectionStates):
    """Base class: owns the socket and the reconnect loop; subclasses own the protocol."""

    #: Seconds without an answer before the kernel ends the connection (`detect_dead_peer`).
    dead_peer_s: float = DEAD_PEER_S

    def __init__(
        self,
        host: str,
        port: int,
        *,
        backoff: Backoff | None = None,
        connect_timeout: float = 5.0,
        name: str = "link",
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.name = name
        self._backoff = backoff or Backoff()
        self._connect_timeout = connect_timeout
        self._progress = asyncio.Event()
        #: Set when a session ended with an error the caller must see (e.g. a rejected login).
        self.failure: SeestarError | None = None
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._write_lock = asyncio.Lock()
        self._rng = random.Random()
        #: Why the last connection attempt or session ended, for the UI.
        self.last_error: str | None = None

    # -- state --------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _entered(self, new: ConnectionState) -> None:
        if new is ConnectionState.CONNECTED:
            self.failure = None
        self._progress.set()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background; returns at once."""
        if self._task is not None and not self._task.done():
            return
        self._set_state(ConnectionState.CONNECTING)
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-link")

    async def connect(self, timeout: float = 10.0) -> None:
        """Start and wait for the first connection."""
        self.start()
        await self.wait_connected(timeout)

    async def wait_connected(self, timeout: float) -> None:
        """Wait until connected.

        Raises the session's `failure` (e.g. AuthenticationError) as soon as an attempt ends with
        one, and NotConnectedError after `timeout` or if the link is closed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.connected:
            if self._state is ConnectionState.CLOSED:
                raise NotConnectedError(f"{self.name} is closed")
            if self.failure is not None:
                raise self.failure
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                detail = f": {self.last_error}" if self.last_error else ""
                raise NotConnectedError(
                    f"{self.name} could not connect to {self.host}:{self.port} "
                    f"within {timeout:g} s{detail}"
                ) from None

    async def close(self) -> None:
        """Stop for good: close the socket, fail what is pending, end the loop."""
        if self._state is ConnectionState.CLOSED:
            return
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_writer()
        self._on_disconnected("client closed")
        self._set_state(ConnectionState.CLOSED)

    def drop(self) -> None:
        """Close the current socket (the loop reconnects); for a keepalive that saw silence."""
        if self._writer is not None:
            self._writer.close()

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), self._connect_timeout
                )
            except (OSError, TimeoutError) as exc:
                self.last_error = f"connect failed: {exc or type(exc).__name__}"
            else:
                attempt = 0
                self._writer = writer
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    detect_dead_peer(sock, self.dead_peer_s)
                try:
                    await self._run_session(reader)
                    self.last_error = "connection closed by the telescope"
                except (OSError, asyncio.IncompleteReadError, ConnectionError) as exc:
                    self.last_error = f"connection lost: {exc or type(exc).__name__}"
                except LinkEnded as exc:
                    self.last_error = str(exc)
                    if exc.error is not None:
                        self.failure = exc.error
                finally:
                    await self._drop_writer()
                    self._on_disconnected(self.last_error or "connection lost")
            self._set_state(ConnectionState.RECONNECTING)
            delay = self._backoff.delay(attempt, self._rng.random())
            attempt += 1
            log.info("%s: %s; retrying in %.2f s", self.name, self.last_error, delay)
            await asyncio.sleep(delay)

    async def _drop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def send(self, data: bytes) -> None:
        """Write bytes on the current connection; NotConnectedError when there is none."""
        writer = self._writer
        if writer is None or writer.is_closing():
            raise NotConnectedError(f"{self.name} is not connected ({self._state})")
        async with self._write_lock:
            try:
                writer.write(data)
                await writer.drain()
            except (OSError, ConnectionError) as exc:
                raise NotConnectedError(f"{self.name}: write failed: {exc}") from exc

    # -- hooks for subclasses -----------------------------------------------------------------

    def _ready(self) -> None:
        """Called by the session once its handshake is done: the link is now CONNECTED."""
        self._set_state(ConnectionState.CONNECTED)

    async def _run_session(self, reader: asyncio.StreamReader) -> None:
        """Read until the connection ends; return or raise to reconnect. Calls `_ready()`."""
        raise NotImplementedError

    def _on_disconnected(self, reason: str) -> None:
        """Fail whatever is pending on the connection that just ended."""


class LinkEnded(Exception):
    """Raised by a session to end the connection with a reason (e.g. keepalive timeout).

    `error`, when given, is raised to callers waiting in `wait_connected`.
    """

    def __init__(self, reason: str, error: SeestarError | None = None) -> None:
        super().__init__(reason)
        self.error = error
