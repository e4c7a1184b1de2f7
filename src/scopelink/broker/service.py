"""The broker as one object: its store and the domain operations over it, its signing key, the
signaling hub and relay, TURN credentials, and the rate limits. No web framework: `web.py` is
its HTTP and WebSocket side, `cli` starts it.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from scopelink.broker.accounts import Account, Accounts
from scopelink.broker.hub import SignalingHub
from scopelink.broker.invitations import Invitations
from scopelink.broker.pairing import Pairings
from scopelink.broker.presence import PresenceBook
from scopelink.broker.refusal import BrokerRefusal, RefusalKind
from scopelink.broker.relay import LocalRelay, PostgresRelay, Relay
from scopelink.broker.store import Store, open_store
from scopelink.broker.telescopes import Telescopes
from scopelink.grants import GrantSigner, load_or_create_private_key
from scopelink.ratelimit import KeyedLimiter
from scopelink.schema.signaling import IceServer
from scopelink.settings import BrokerSettings
from scopelink.webrtc.ice import IceSettings, ice_servers

log = logging.getLogger(__name__)

SIGNING_KEY_FILE = "broker-signing-key.pem"
DATABASE_FILE = "broker.db"
#: Instance names go into LISTEN channel names and conversation ids.
INSTANCE_RULE = re.compile(r"[a-z0-9]{1,24}")


@dataclass(slots=True)
class Limits:
    """The broker's rate limits, each per key (an address, or an account)."""

    logins: KeyedLimiter
    pairings: KeyedLimiter
    claims: KeyedLimiter
    connects: KeyedLimiter

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> Limits:
        def per_minute(rate: float) -> KeyedLimiter:
            return KeyedLimiter(rate / 60.0, max(1.0, rate))

        return cls(
            logins=per_minute(settings.login_rate_per_min),
            pairings=per_minute(settings.pairing_rate_per_min),
            claims=per_minute(settings.pairing_rate_per_min),
            connects=per_minute(settings.connect_rate_per_min),
        )

    @staticmethod
    def check(limiter: KeyedLimiter, keys: tuple[str, ...], what: str) -> None:
        """Refuse when any key (an address, an account) is over its rate."""
        for key in keys:
            if not limiter.allow(key):
                raise BrokerRefusal(
                    RefusalKind.RATE_LIMITED, f"too many {what} from here; wait a minute"
                )


def state_dir(settings: BrokerSettings) -> Path:
    """The broker's state directory, made (0700) if need be."""
    state = Path(settings.state_dir).expanduser()
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    return state


class Broker:
    """Everything `scopelink broker` serves; `await start()` before use, `stop()` after."""

    def __init__(self, settings: BrokerSettings, store: Store, relay: Relay) -> None:
        self.settings = settings
        self.store = store
        self.accounts = Accounts(store)
        self.pairings = Pairings(store)
        self.telescopes = Telescopes(store)
        self.invitations = Invitations(store, self.telescopes)
        self.presence = PresenceBook(store, stale_after_s=settings.heartbeat_s * 3)
        self.instance = relay.instance
        self.hub = SignalingHub(relay.instance, relay, self.presence)
        self.limits = Limits.from_settings(settings)
        key = settings.signing_key or state_dir(settings) / SIGNING_KEY_FILE
        self.signer = GrantSigner(load_or_create_private_key(Path(key).expanduser()))
        self.ice = IceSettings(
            stun_urls=list(settings.stun_urls),
            turn_urls=list(settings.turn_urls),
            turn_secret=settings.turn_secret,
            turn_ttl_s=settings.turn_ttl_s,
        )
        self.started = time.time()

    @classmethod
    async def open(cls, settings: BrokerSettings) -> Broker:
        """The broker for `settings`: its store opened and migrated, its relay chosen."""
        state = state_dir(settings)
        url = settings.store_url or f"sqlite:///{state / DATABASE_FILE}"
        instance = settings.instance or secrets.token_hex(4)
        if not INSTANCE_RULE.fullmatch(instance):
            raise ValueError("an instance name is 1 to 24 lowercase letters and digits")
        if settings.relay == "postgres":
            if not url.startswith(("postgresql://", "postgres://")):
                raise ValueError("the postgres relay needs a postgresql:// store URL")
            relay: Relay = PostgresRelay(instance, url)
        elif settings.relay == "local":
            relay = LocalRelay(instance)
        else:
            raise ValueError(f"unknown relay {settings.relay!r}: use 'local' or 'postgres'")
        store = await open_store(url)
        await store.migrate()
        return cls(settings, store, relay)

    async def start(self) -> None:
        await self.hub.start()
        log.info("broker instance %s started", self.instance)

    async def stop(self) -> None:
        await self.hub.stop()
        await self.store.close()

    # -- what the web side asks -------------------------------------------------------------

    def ice_for(self, account: Account | str) -> list[IceServer]:
        """ICE servers with fresh TURN credentials for an account (or the proxy of a telescope:
        `proxy-<id>`): the TURN username names it, never a secret."""
        user = account.id if isinstance(account, Account) else account
        return [IceServer.model_validate(s) for s in ice_servers(self.ice, user, time.time())]

    async def sign_in(self, name: str, password: str, address: str) -> Account:
        Limits.check(self.limits.logins, (f"addr:{address}", f"name:{name.lower()}"), "sign-ins")
        return await self.accounts.login(name, password)
