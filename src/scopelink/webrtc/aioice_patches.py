"""Three corrections to aioice 0.13 (aiortc's ICE agent), applied once by `apply()`.

1. **Follow the browser's later nomination.** The browser is the controlling agent and may
   nominate one pair, then a better one (Chromium nominates a relay pair that answered first,
   then the direct pair once its check succeeds). aioice completes on the first nominated pair
   and cancels the checks still in progress; a cancelled pair keeps its state and task, so a
   later USE-CANDIDATE on it starts no triggered check and never wins: the browser sent on the
   direct path while the video still came through the TURN relay. After `connect()` the
   cancelled pairs count as failed, so the browser's next check on one starts a triggered check
   (RFC 8445 section 7.3.1.4) and a nomination on it switches the pair the media uses.
2. **Answer a check with a check.** Behind a NAT or firewall the first check each side sends is
   dropped by the other side's router, as nothing has gone out there yet. When the browser's
   check then arrives on a pair whose own check is still in progress, RFC 8445 section 7.3.1.4
   asks for an immediate retransmission of that check; aioice waits for its 500 ms STUN timer,
   half a second of every direct connection's set-up (docs/network.md, "Why these connect
   times"). The check in progress is now sent again at once.
3. **mDNS state per event loop.** aioice keeps its mDNS resolver and the lock around it in a
   thread-local, created on the first loop that resolves a `.local` candidate. A second loop on
   the same thread (every `asyncio.run`, every test) then fails with "bound to a different event
   loop" as soon as two lookups overlap, as they do for an offer carrying two mDNS candidates.
   The state is reset when the running loop changes.

`tests/webrtc/test_aioice_patches.py` fails if the aioice internals these rely on change.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aioice.ice
from aioice.ice import CandidatePair, Connection, StunProtocol

_applied = False


def apply() -> None:
    """Install both corrections (idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True
    original_connect = Connection.connect
    original_add = Connection.add_remote_candidate
    original_check_incoming = Connection.check_incoming

    async def connect(self: Connection) -> None:
        await original_connect(self)
        release_cancelled_checks(self)

    async def add_remote_candidate(self: Connection, remote_candidate: Any) -> None:
        mdns_state_for_running_loop()
        await original_add(self, remote_candidate)

    def check_incoming(
        self: Connection, message: Any, addr: tuple[Any, ...], protocol: StunProtocol
    ) -> None:
        retransmit_check_in_progress(self, (addr[0], addr[1]), protocol)
        original_check_incoming(self, message, addr, protocol)

    Connection.connect = connect  # type: ignore[method-assign]
    Connection.check_incoming = check_incoming  # type: ignore[method-assign]
    Connection.add_remote_candidate = add_remote_candidate  # type: ignore[method-assign]


def release_cancelled_checks(connection: Connection) -> None:
    """Mark the pairs whose checks `connect()` cancelled as failed, free to be checked again."""
    for pair in connection._check_list:
        if pair.state == CandidatePair.State.IN_PROGRESS:
            pair.task = None
            pair.state = CandidatePair.State.FAILED


def retransmit_check_in_progress(
    connection: Connection, remote: tuple[str, int], protocol: StunProtocol
) -> None:
    """Send again, now, the check in progress on the pair a check just arrived on (if any)."""
    for pair in connection._check_list:
        if pair.protocol is not protocol or pair.remote_addr != remote:
            continue
        if pair.state != CandidatePair.State.IN_PROGRESS:
            return
        for transaction in list(protocol.transactions.values()):
            if transaction._Transaction__addr == remote:  # type: ignore[attr-defined]
                request = transaction._Transaction__request  # type: ignore[attr-defined]
                protocol.send_stun(request, remote)
        return


def mdns_state_for_running_loop() -> None:
    """Give aioice fresh mDNS state if it was made on another (probably closed) event loop."""
    state = aioice.ice._mdns
    loop = asyncio.get_running_loop()
    if getattr(state, "loop", None) is loop:
        return
    protocol = getattr(state, "protocol", None)
    if protocol is not None:
        # Its loop is gone or elsewhere; closing may fail, and then the socket goes with it.
        with contextlib.suppress(Exception):
            protocol.transport.close()
    state.loop = loop
    state.lock = asyncio.Lock()
    state.protocol = None
    state.subscribers = set()
