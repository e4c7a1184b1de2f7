"""The control channel client (4700/tcp): requests with replies, events to subscribers.

`ControlClient.call()` sends one request and returns its result or raises a typed error; events go
to every subscriber as typed objects. The link keeps itself alive below the firmware's idle cut,
reconnects with backoff, and fails pending calls at once when it drops. On every connection it
logs in when a key is given (firmware 7.18+) and reads `get_device_state` to learn the firmware.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from scopelink.seestar import verify
from scopelink.seestar.errors import (
    AuthenticationError,
    CallTimeoutError,
    CommandError,
    ConnectionLostError,
    NotConnectedError,
    ProtocolError,
    SeestarError,
)
from scopelink.seestar.events import Event, Version, parse_event
from scopelink.seestar.framing import LineBuffer
from scopelink.seestar.link import LinkEnded, ReconnectingLink
from scopelink.seestar.messages import RawEvent, Request, Response, encode_request, parse_message
from scopelink.settings import CONTROL_KEEPALIVE_S, CONTROL_PORT, Backoff

log = logging.getLogger(__name__)

EventListener = Callable[[Event], None]

#: Our request ids start here, clear of the small fixed ids other clients use.
FIRST_REQUEST_ID = 10_000


class ControlClient(ReconnectingLink):
    """An asyncio client for the telescope's control port."""

    def __init__(
        self,
        host: str,
        port: int = CONTROL_PORT,
        *,
        private_key_pem: bytes | None = None,
        keepalive_s: float = CONTROL_KEEPALIVE_S,
        call_timeout: float = 10.0,
        handshake_timeout: float = 5.0,
        verify_injection: bool = True,
        max_pending: int = 256,
        backoff: Backoff | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            host, port, backoff=backoff, connect_timeout=connect_timeout, name="control"
        )
        self._key = verify.load_private_key(private_key_pem) if private_key_pem else None
        self._keepalive_s = keepalive_s
        self._call_timeout = call_timeout
        self._handshake_timeout = handshake_timeout
        self._verify_injection = verify_injection
        self._max_pending = max_pending
        self._ids = itertools.count(FIRST_REQUEST_ID)
        self._pending: dict[int, tuple[str, asyncio.Future[Response]]] = {}
        self._subscribers: list[tuple[EventListener, frozenset[str] | None]] = []
        self._done_listeners: list[Callable[[str, Any], None]] = []
        self._last_rx = 0.0
        self._last_tx = 0.0
        #: The firmware's `get_device_state` result, read on every connect.
        self.device_state: dict[str, Any] = {}
        #: `firmware_ver_int`, e.g. 2732 for "7.32"; None until known.
        self.firmware: int | None = None
        #: True once the login handshake succeeded on this connection.
        self.verified = False
        #: Lines from the telescope that could not be parsed (they are logged and skipped).
        self.malformed_lines = 0
        #: Replies that arrived after their call had timed out.
        self.late_replies = 0

    # -- events -------------------------------------------------------------------------------

    def subscribe(
        self, listener: EventListener, names: set[str] | None = None
    ) -> Callable[[], None]:
        """Deliver events (all, or those named) to `listener`; returns an unsubscribe function.

        Subscriptions survive reconnects.
        """
        entry = (listener, frozenset(names) if names else None)
        self._subscribers.append(entry)
        return lambda: self._subscribers.remove(entry) if entry in self._subscribers else None

    async def wait_for_event(
        self, name: str, predicate: Callable[[Event], bool] = lambda e: True, timeout: float = 30.0
    ) -> Event:
        """The next event called `name` that satisfies `predicate`."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Event] = loop.create_future()

        def on_event(event: Event) -> None:
            if not fut.done() and predicate(event):
                fut.set_result(event)

        unsubscribe = self.subscribe(on_event, {name})
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise CallTimeoutError(f"no {name} event within {timeout:g} s") from None
        finally:
            unsubscribe()

    def _dispatch_event(self, raw: RawEvent) -> None:
        event = parse_event(raw)
        if isinstance(event, Version) and event.firmware_ver_int:
            # Sent unprompted on connect, even before login: the firmware before device state.
            self.firmware = event.firmware_ver_int
        for listener, names in list(self._subscribers):
            if names is None or raw.name in names:
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener failed on %s", raw.name)

    def on_done(self, listener: Callable[[str, Any], None]) -> Callable[[], None]:
        """Tell `listener(method, params)` of every request the telescope answered with
        success (whoever sent it); returns an unsubscribe function."""
        self._done_listeners.append(listener)
        return lambda: self._done_listeners.remove(listener)

    # -- calls --------------------------------------------------------------------------------

    async def call(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Send a request and return its `result`.

        Raises CommandError (the telescope refused, with its code), CallTimeoutError (no reply:
        outcome unknown), ConnectionLostError (link dropped while waiting: outcome unknown) or
        NotConnectedError (nothing was sent).
        """
        if not self.connected:
            raise NotConnectedError(f"{method}: not connected to the telescope ({self.state})")
        return await self._call(method, params, timeout)

    async def _call(self, method: str, params: Any, timeout: float | None) -> Any:
        if len(self._pending) >= self._max_pending:
            raise SeestarError(f"{method}: too many requests in flight ({self._max_pending})")
        if self._verify_injection:
            has_params, params = verify.add_verify(method, params, self.firmware)
        else:
            has_params = params is not None
        rid = next(self._ids)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (method, fut)
        try:
            await self.send(encode_request(Request(rid, method, params, has_params)))
            self._last_tx = time.monotonic()
            limit = self._call_timeout if timeout is None else timeout
            try:
                response = await asyncio.wait_for(fut, limit)
            except TimeoutError:
                raise CallTimeoutError(
                    f"{method}: no reply within {limit:g} s; the outcome is unknown"
                ) from None
        finally:
            self._pending.pop(rid, None)
        if not response.ok:
            raise CommandError(method, response.code, response.error or "error")
        for listener in list(self._done_listeners):
            try:
                listener(method, params)
            except Exception:
                log.exception("reply listener failed on %s", method)
        return response.result

    def _on_disconnected(self, reason: str) -> None:
        self.verified = False
        self.firmware = None
        pending, self._pending = self._pending, {}
        for method, fut in pending.values():
            if not fut.done():
                fut.set_exception(
                    ConnectionLostError(
                        f"{method}: connection lost before the reply ({reason}); "
                        "the command may or may not have run"
                    )
                )

    # -- the session --------------------------------------------------------------------------

    async def _run_session(self, reader: asyncio.StreamReader) -> None:
        self._last_rx = self._last_tx = time.monotonic()
        read_task = asyncio.create_task(self._read_loop(reader), name="control-reader")
        setup_task = asyncio.create_task(self._setup(), name="control-setup")
        tasks: set[asyncio.Task[None]] = {read_task, setup_task}
        try:
            done, _ = await asyncio.wait({read_task, setup_task}, return_when="FIRST_COMPLETED")
            if setup_task in done and setup_task.exception() is None:
                self._ready()
                keepalive = asyncio.create_task(self._keepalive(), name="control-keepalive")
                tasks.add(keepalive)
                done, _ = await asyncio.wait({read_task, keepalive}, return_when="FIRST_COMPLETED")
            for task in done:
                task.result()  # re-raise why the session ended
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        lines = LineBuffer()
        while data := await reader.read(65536):
            self._last_rx = time.monotonic()
            for line in lines.feed(data):
                self._handle_line(line)
        raise LinkEnded("connection closed by the telescope")

    def _handle_line(self, line: bytes) -> None:
        try:
            message = parse_message(line)
        except ProtocolError as exc:
            self.malformed_lines += 1
            log.warning("skipping a malformed line from the telescope: %s", exc)
            return
        if isinstance(message, RawEvent):
            self._dispatch_event(message)
            return
        entry = self._pending.get(message.id)
        if entry is None or entry[1].done():
            self.late_replies += 1
            log.debug("reply %d (%s) matches no pending call", message.id, message.method)
            return
        entry[1].set_result(message)

    async def _setup(self) -> None:
        """Per-connection handshake: optional login, then the device state."""
        t = self._handshake_timeout
        if self._key is not None:
            await self._login(t)
        try:
            state = await self._call("get_device_state", None, t)
        except CallTimeoutError:
            hint = (
                "the login key was accepted but the telescope is silent"
                if self.verified
                else "firmware 7.32 and later answer nothing until the login handshake succeeds;"
                " supply the telescope's login key"
            )
            reason = f"the telescope does not answer get_device_state ({hint})"
            needs_login = (
                not self.verified
                and self.firmware is not None
                and self.firmware >= verify.LOGIN_REQUIRED_FIRMWARE
            )
            error = AuthenticationError(reason) if needs_login else CallTimeoutError(reason)
            raise LinkEnded(reason, error) from None
        if not isinstance(state, dict):
            raise LinkEnded(f"get_device_state returned {type(state).__name__}, not an object")
        self.device_state = state
        device = state.get("device") or {}
        fw = device.get("firmware_ver_int")
        self.firmware = fw if isinstance(fw, int) else None
        if self._key is None and self.firmware and self.firmware >= verify.LOGIN_REQUIRED_FIRMWARE:
            log.warning("firmware %s expects a login; no key was given", self.firmware)

    async def _login(self, timeout: float) -> None:
        assert self._key is not None
        try:
            challenge = await self._call("get_verify_str", None, timeout)
            text = challenge.get("str") if isinstance(challenge, dict) else None
            if not text:
                raise AuthenticationError("the telescope sent no login challenge (busy?)")
            sign = verify.sign_challenge(self._key, text)
            await self._call("verify_client", {"sign": sign, "data": text}, timeout)
        except CommandError as exc:
            reason = f"login rejected by the telescope: {exc.text} (code {exc.code})"
            raise LinkEnded(reason, AuthenticationError(reason)) from None
        except (CallTimeoutError, AuthenticationError) as exc:
            reason = f"login failed: {exc}"
            raise LinkEnded(reason, AuthenticationError(reason)) from None
        self.verified = True

    async def _keepalive(self) -> None:
        """Keep the socket busy below the idle cut; a silent telescope is a dead link."""
        while True:
            await asyncio.sleep(self._keepalive_s / 2)
            now = time.monotonic()
            if now - self._last_rx > 3 * self._keepalive_s:
                raise LinkEnded(f"no data from the telescope for {now - self._last_rx:.0f} s")
            if now - self._last_tx >= self._keepalive_s:
                with contextlib.suppress(SeestarError):
                    await self._call("test_connection", None, self._keepalive_s)
