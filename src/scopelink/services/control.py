"""The control lease: at most one client commands a telescope at a time; the others watch.

A client takes the lease by asking for it or, when nobody holds it, by sending a command. The
holder keeps it by being heard from (any message on its data channel, any command over REST)
and loses it after `LEASE_TTL_S` of silence, by releasing it, or by handing it over. Another
client may ask for it: the holder is asked and has `HANDOVER_TIMEOUT_S` to grant or deny; a
holder that does not answer loses it to the one who asked.

`stop` is never refused for the lease: anyone allowed to command may stop the mount.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from scopelink.schema.state import ControlState, Holder

log = logging.getLogger(__name__)

#: A holder not heard from for this long loses the lease.
LEASE_TTL_S = 10.0
#: How long a holder has to answer a request for the lease.
HANDOVER_TIMEOUT_S = 10.0
#: A data-channel holder sends something at least this often (`Welcome.keepalive_ms`).
KEEPALIVE_S = 0.5
#: While a `move` runs, the mount stops when its sender has been silent this long. Three missed
#: keepalives: a busy tab or a lost packet is not a silence, a closed lid or a dead link is.
DEADMAN_S = 1.5

Listener = Callable[["ControlLease"], None]


@dataclass(frozen=True, slots=True)
class Controller:
    """Who sends commands: a client id (a tab, a script), a name to show, and its transport.
    `keepalive`: the transport sends keepalives (the data channel), so its moves have a
    deadman; over REST a move is bounded by its duration."""

    client: str
    name: str | None = None
    transport: str = "rest"
    keepalive: bool = False


class LeaseHeld(Exception):
    """Another client holds the lease."""

    def __init__(self, holder: Controller) -> None:
        who = holder.name or f"another client ({holder.transport})"
        super().__init__(f"{who} controls this telescope; ask for control first")
        self.holder = holder


class ControlLease:
    """The lease on one telescope."""

    def __init__(
        self,
        telescope_id: str,
        *,
        ttl_s: float = LEASE_TTL_S,
        handover_timeout_s: float = HANDOVER_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.telescope_id = telescope_id
        self.ttl_s = ttl_s
        self.handover_timeout_s = handover_timeout_s
        self._clock = clock
        self._holder: Controller | None = None
        self._seen = 0.0
        self._request: tuple[Controller, asyncio.Future[bool]] | None = None
        #: Open connections per client (`connected`).
        self._connections: dict[str, int] = {}
        self._listeners: list[Listener] = []

    # -- state ------------------------------------------------------------------------------------

    @property
    def holder(self) -> Controller | None:
        """The holder, or None (a silent holder's lease has ended)."""
        if self._holder is not None and self._clock() - self._seen > self.ttl_s:
            log.info("control of %s: %s went silent", self.telescope_id, self._holder.client)
            self._set(None)
        return self._holder

    @property
    def expires_in_s(self) -> float | None:
        if self.holder is None:
            return None
        return max(0.0, self.ttl_s - (self._clock() - self._seen))

    @property
    def requested_by(self) -> Controller | None:
        return self._request[0] if self._request is not None else None

    def holds(self, client: str) -> bool:
        holder = self.holder
        return holder is not None and holder.client == client

    def silence_s(self, client: str) -> float | None:
        """How long since the holder `client` was last heard from (None: not the holder)."""
        return self._clock() - self._seen if self.holds(client) else None

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    # -- actions ----------------------------------------------------------------------------------

    def take(self, who: Controller) -> None:
        """Take the lease when it is free, keep it when it is ours (a command from `who` does
        this too); raises LeaseHeld."""
        holder = self.holder
        if holder is None or holder.client == who.client:
            self._take(who)
            return
        raise LeaseHeld(holder)

    def touch(self, client: str) -> None:
        """`client` was heard from: a holder's lease runs on."""
        if self.holds(client):
            self._seen = self._clock()

    def release(self, client: str) -> bool:
        if not self.holds(client):
            return False
        self._set(None)
        return True

    async def request(self, who: Controller) -> bool:
        """Ask the holder for the lease: True once `who` holds it (granted, free, or the holder
        did not answer in time), False when the holder denied or another request is pending."""
        holder = self.holder
        if holder is None or holder.client == who.client:
            self._take(who)
            return True
        if self._request is not None:
            return False
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._request = (who, answer)
        self._notify()
        try:
            granted = await asyncio.wait_for(asyncio.shield(answer), self.handover_timeout_s)
        except TimeoutError:
            granted = True  # a holder who does not answer is not there
            log.info("control of %s: no answer from %s", self.telescope_id, holder.client)
        finally:
            if self._request is not None and self._request[1] is answer:
                self._request = None
        if self.holds(who.client):
            return True  # granted: `answer` handed it over
        if (granted and self.holder == holder) or self.holder is None:
            self._take(who)  # the holder did not answer, or left meanwhile
            return True
        self._notify()
        return False

    def answer(self, client: str, grant: bool) -> bool:
        """The holder's answer to a pending request; False if there is none or it is not ours."""
        if self._request is None or not self.holds(client):
            return False
        asking, future = self._request
        if future.done():
            return False
        self._seen = self._clock()
        self._request = None  # answered: nobody is asking any more, as of now
        future.set_result(grant)
        if grant:
            self._take(asking)  # at once: the old holder's next command is already refused
        else:
            self._notify()
        return True

    def connected(self, client: str) -> Callable[[], None]:
        """`client` opened a connection (a data channel); call the result when it closes. Its
        pending request is withdrawn when its last connection closes, not before: a client
        moving to a new connection (renegotiation) keeps asking."""
        self._connections[client] = self._connections.get(client, 0) + 1
        closed = False

        def disconnected() -> None:
            nonlocal closed
            if closed:
                return
            closed = True
            left = self._connections.get(client, 1) - 1
            if left > 0:
                self._connections[client] = left
                return
            self._connections.pop(client, None)
            self.withdraw(client)

        return disconnected

    def withdraw(self, client: str) -> None:
        """`client`'s connection closed: its pending request, if any, is off. (A lease it holds
        runs on until its silence ends it: it may come back on a new connection.)"""
        if self._request is not None and self._request[0].client == client:
            future = self._request[1]
            self._request = None
            if not future.done():
                future.set_result(False)

    # -- inside -----------------------------------------------------------------------------------

    def _take(self, who: Controller) -> None:
        self._seen = self._clock()
        if self._holder != who:
            log.info("control of %s: %s (%s)", self.telescope_id, who.client, who.transport)
            self._set(who)

    def _set(self, holder: Controller | None) -> None:
        self._holder = holder
        self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:
                log.exception("control lease listener failed")


def _public(who: Controller | None) -> Holder | None:
    return None if who is None else Holder(name=who.name, transport=who.transport)


def control_state(lease: ControlLease, client: str) -> ControlState:
    """The lease as `client` sees it (other clients' ids are never shown)."""
    expires = lease.expires_in_s
    asking = lease.requested_by
    return ControlState(
        holder=_public(lease.holder),
        yours=lease.holds(client),
        expires_in_ms=None if expires is None else round(expires * 1000),
        requested_by=_public(asking),
        requested_by_you=asking is not None and asking.client == client,
        handover_timeout_ms=round(lease.handover_timeout_s * 1000),
    )
