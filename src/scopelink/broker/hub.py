"""The broker's signaling switchboard: the proxy links this instance holds, the browsers'
conversations it holds, and where each relayed message goes (through the `Relay`, which is a
direct call when both ends are here).

Frames between instances (`Relay` payloads), by `k`:
- to the instance holding telescope `t`'s link: `open` (conv, grant, ice, cice), `relay` (conv,
  data), `end` (conv), `revoke` (account);
- to the instance holding browser conversation `conv` (named in the conv id, `instance.random`):
  `back` (data), `over` (code, reason).

Nothing here reads a signaling message: `data` is relayed as text, and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import BaseModel

from scopelink.broker.presence import PresenceBook
from scopelink.broker.relay import Frame, Relay, UnknownInstance
from scopelink.schema.link import LinkEnd, LinkOpen, LinkRelay, LinkRevoke
from scopelink.schema.signaling import IceServer

log = logging.getLogger(__name__)

#: A browser's conversation ends with these when its telescope cannot be reached.
CLOSE_OFFLINE = 4503
CLOSE_NO_ANSWER = 4504


class TelescopeOffline(Exception):
    """No proxy link for the telescope on any instance."""


class BrowserEnd(Protocol):
    """A browser's signaling socket on this instance."""

    async def deliver(self, text: str) -> None: ...

    async def finish(self, code: int, reason: str) -> None: ...


class ProxyEnd(Protocol):
    """A proxy's link on this instance."""

    async def send(self, message: BaseModel) -> bool: ...


@dataclass(slots=True)
class Traffic:
    """Bytes the broker carried for signaling, and its keepalives: what it saw of a session."""

    signaling_bytes: int = 0
    signaling_messages: int = 0
    keepalive_bytes: int = 0
    keepalive_messages: int = 0

    def signaling(self, size: int) -> None:
        self.signaling_bytes += size
        self.signaling_messages += 1

    def keepalive(self, size: int) -> None:
        self.keepalive_bytes += size
        self.keepalive_messages += 1


@dataclass(slots=True)
class _Browser:
    end: BrowserEnd
    telescope_id: str
    account_id: str
    instance: str
    answered: asyncio.Event = field(default_factory=asyncio.Event)


class SignalingHub:
    """One broker instance's share of the signaling."""

    def __init__(self, instance: str, relay: Relay, presence: PresenceBook) -> None:
        self.instance = instance
        self.relay = relay
        self.presence = presence
        self.links: dict[str, ProxyEnd] = {}
        #: Conversations relayed through each local link (to end them when it goes).
        self.link_convs: dict[str, set[str]] = {}
        self.browsers: dict[str, _Browser] = {}
        self.traffic = Traffic()

    async def start(self) -> None:
        await self.presence.forget_instance(self.instance)
        await self.relay.start(self._deliver)

    async def stop(self) -> None:
        await self.relay.stop()
        for telescope_id in list(self.links):
            with contextlib.suppress(Exception):
                await self.presence.unlinked(telescope_id, self.instance)

    def new_conv(self) -> str:
        return f"{self.instance}.{secrets.token_urlsafe(9)}"

    # -- the browser's side ------------------------------------------------------------------

    async def connect(
        self,
        conv: str,
        telescope_id: str,
        account_id: str,
        grant: str,
        ice: list[IceServer],
        client_ice: list[IceServer],
        end: BrowserEnd,
    ) -> None:
        """Open conversation `conv` on the telescope's proxy, wherever its link is."""
        presence = await self.presence.of(telescope_id)
        if presence is None:
            raise TelescopeOffline(telescope_id)
        self.browsers[conv] = _Browser(end, telescope_id, account_id, presence.instance)
        await self.presence.opened(conv, telescope_id, account_id, self.instance)
        frame: Frame = {
            "k": "open",
            "t": telescope_id,
            "conv": conv,
            "grant": grant,
            "ice": [s.model_dump(exclude_none=True) for s in ice],
            "cice": [s.model_dump(exclude_none=True) for s in client_ice],
        }
        await self._publish(presence.instance, frame, conv)

    async def answered(self, conv: str, timeout_s: float) -> bool:
        """Whether the proxy said anything on `conv` within `timeout_s`."""
        browser = self.browsers.get(conv)
        if browser is None:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(browser.answered.wait(), timeout_s)
        return browser.answered.is_set()

    async def from_browser(self, conv: str, text: str) -> None:
        browser = self.browsers.get(conv)
        if browser is None:
            return
        self.traffic.signaling(len(text))
        frame = {"k": "relay", "t": browser.telescope_id, "conv": conv, "data": text}
        await self._publish(browser.instance, frame, conv)

    async def browser_left(self, conv: str, outcome: str) -> None:
        browser = self.browsers.pop(conv, None)
        if browser is None:
            return
        with contextlib.suppress(Exception):
            await self.presence.ended(conv, outcome)
        with contextlib.suppress(UnknownInstance):
            await self.relay.publish(
                browser.instance, {"k": "end", "t": browser.telescope_id, "conv": conv}
            )

    async def revoke(self, telescope_id: str, account_id: str) -> None:
        """Tell the telescope's proxy that an account lost its role (if it is online)."""
        presence = await self.presence.of(telescope_id)
        if presence is not None:
            with contextlib.suppress(UnknownInstance):
                await self.relay.publish(
                    presence.instance, {"k": "revoke", "t": telescope_id, "account": account_id}
                )

    # -- the proxy's side --------------------------------------------------------------------

    async def link_up(
        self, telescope_id: str, end: ProxyEnd, max_peers: int, lan_url: str | None = None
    ) -> ProxyEnd | None:
        """A proxy's link is up here; the link it replaces on this instance, if any."""
        previous = self.links.get(telescope_id)
        self.links[telescope_id] = end
        self.link_convs.setdefault(telescope_id, set())
        await self.presence.linked(telescope_id, self.instance, max_peers, lan_url)
        return previous

    async def link_down(self, telescope_id: str, end: ProxyEnd) -> None:
        if self.links.get(telescope_id) is not end:
            return  # replaced by a newer link: that one's conversations are its own
        del self.links[telescope_id]
        with contextlib.suppress(Exception):
            await self.presence.unlinked(telescope_id, self.instance)
        for conv in self.link_convs.pop(telescope_id, set()):
            await self._over(conv, CLOSE_OFFLINE, "the telescope's proxy went offline")

    async def heartbeat(self, telescope_id: str) -> bool:
        """A link's heartbeat; False when its telescope's link has moved to another instance."""
        return await self.presence.seen(telescope_id, self.instance)

    async def from_proxy(self, telescope_id: str, message: LinkRelay | LinkEnd) -> None:
        convs = self.link_convs.get(telescope_id, set())
        if message.conv not in convs:
            return  # not a conversation of this telescope's: a proxy cannot reach others'
        if isinstance(message, LinkRelay):
            self.traffic.signaling(len(message.data))
            frame: Frame = {"k": "back", "conv": message.conv, "data": message.data}
        else:
            convs.discard(message.conv)
            frame = {
                "k": "over",
                "conv": message.conv,
                "code": message.code,
                "reason": message.reason,
            }
        await self._publish(message.conv.split(".", 1)[0], frame, message.conv)

    # -- delivery ----------------------------------------------------------------------------

    async def _publish(self, instance: str, frame: Frame, conv: str) -> None:
        try:
            await self.relay.publish(instance, frame)
        except UnknownInstance:
            log.warning("relay: conversation %s: no instance %s", conv, instance)
            if frame["k"] in ("open", "relay"):
                await self._over(conv, CLOSE_OFFLINE, "the telescope's broker is unreachable")

    async def _over(self, conv: str, code: int, reason: str) -> None:
        instance = conv.split(".", 1)[0]
        frame = {"k": "over", "conv": conv, "code": code, "reason": reason}
        if instance == self.instance:
            await self._deliver(frame)
        else:
            with contextlib.suppress(UnknownInstance):
                await self.relay.publish(instance, frame)

    async def _deliver(self, frame: Frame) -> None:
        kind = frame.get("k")
        if kind in ("back", "over"):
            await self._to_browser(frame)
            return
        telescope_id = str(frame.get("t"))
        link = self.links.get(telescope_id)
        conv = str(frame.get("conv", ""))
        if link is None:
            if kind in ("open", "relay"):
                await self._over(conv, CLOSE_OFFLINE, "the telescope's proxy is offline")
            return
        if kind == "open":
            self.link_convs.setdefault(telescope_id, set()).add(conv)
            message: BaseModel = LinkOpen(
                conv=conv,
                grant=frame["grant"],
                ice_servers=[IceServer.model_validate(s) for s in frame["ice"]],
                client_ice_servers=[IceServer.model_validate(s) for s in frame["cice"]],
            )
        elif kind == "relay":
            message = LinkRelay(conv=conv, data=frame["data"])
        elif kind == "end":
            self.link_convs.get(telescope_id, set()).discard(conv)
            message = LinkEnd(conv=conv, code=1000, reason="the browser left")
        elif kind == "revoke":
            message = LinkRevoke(account=frame["account"])
        else:
            log.warning("relay: unknown frame kind %r", kind)
            return
        if not await link.send(message) and kind in ("open", "relay"):
            await self._over(conv, CLOSE_OFFLINE, "the telescope's proxy went offline")

    async def _to_browser(self, frame: Frame) -> None:
        conv = str(frame.get("conv"))
        browser = self.browsers.get(conv)
        if browser is None:
            return
        browser.answered.set()
        if frame["k"] == "back":
            await browser.end.deliver(frame["data"])
        else:
            self.browsers.pop(conv, None)
            with contextlib.suppress(Exception):
                await self.presence.ended(conv, frame.get("reason") or "closed")
            await browser.end.finish(int(frame["code"]), str(frame.get("reason", "")))


__all__ = ["CLOSE_NO_ANSWER", "CLOSE_OFFLINE", "SignalingHub", "TelescopeOffline", "Traffic"]
