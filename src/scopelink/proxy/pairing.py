"""Pairing a proxy with an owner's account, once (the device-code pattern): the proxy sends its
public key, shows the short code the broker gives, and waits while the owner types it in the
broker's page; the broker then names the telescope and gives the key its grants are signed
with. The proxy saves both (`ProxyIdentity.save_pairing`)."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable

from pydantic import ValidationError
from websockets.asyncio.client import connect

from scopelink.proxy.identity import Pairing, ProxyIdentity
from scopelink.proxy.link import link_url
from scopelink.schema.link import PairCode, PairDone, PairRequest

log = logging.getLogger(__name__)


class PairingFailed(Exception):
    """The pairing did not happen, and why (expired, locked, refused)."""


async def pair(
    broker_url: str,
    identity: ProxyIdentity,
    show: Callable[[PairCode], None],
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> Pairing:
    """Pair this proxy with the account of whoever types the code `show` displays."""
    url = link_url(broker_url).removesuffix("/link") + "/pair"
    async with connect(url, ssl=ssl_context, open_timeout=10) as ws:
        await ws.send(PairRequest(public_key=identity.public_key).model_dump_json())
        try:
            first = await ws.recv()
            try:
                code = PairCode.model_validate_json(first)
            except ValidationError:
                done = PairDone.model_validate_json(first)
                raise PairingFailed(done.detail or done.type) from None
            show(code)
            done = PairDone.model_validate_json(await ws.recv())
        except ValidationError as exc:
            raise PairingFailed(f"the broker answered something else: {exc}") from None
    if done.type != "paired" or not done.telescope_id or not done.broker_key:
        raise PairingFailed(done.detail or done.type)
    pairing = Pairing(broker_url, done.telescope_id, done.broker_key)
    identity.save_pairing(pairing)
    log.info("paired as telescope %s", done.telescope_id)
    return pairing
