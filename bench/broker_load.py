"""The parts of `bench/bench_broker.py`: the broker in a process of its own, its store seeded
directly, simulated proxies holding their links and simulated browsers setting up signaling.

- `seed`: one owner account with an API token and `count` telescopes, each bound to its own
  Ed25519 proxy key, written straight into the broker's SQLite file (`pair_telescope` in one
  store transaction: pairing through the API is rate-limited and needs a person per code).
- `serve_broker` (`python bench/broker_load.py broker …`): one broker instance, the embedded
  default store, plain HTTP on loopback, as `scopelink broker` serves it (uvicorn's defaults,
  its WebSocket pings every 20 s included), with the rate limits raised; optionally profiled
  with cProfile between SIGUSR1 and SIGUSR2.
- `ProxyFleet`: simulated proxies speaking the real link protocol (`schema/link.py`): the
  challenge signed with the proxy's key, `register`, a `ping` every `heartbeat_s` as
  `proxy/link.py` does, and each `open` answered as the real proxy does: the grant checked
  (`GrantVerifier`, once) and the signaling `hello` relayed; the conversation is then held
  until the broker says the browser left (`end`).
- `set_up`: one browser's set-up: its signaling WebSocket opened with `?token=`, the `hello`
  received, the socket closed.
- `cpu_seconds`, `memory_kib`: a process's CPU time and memory from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from scopelink.grants import (
    GrantRefused,
    GrantVerifier,
    generate_private_key,
    public_key_pem,
    sign_challenge,
)
from scopelink.schema.link import LINK_VERSION, challenge_text

OWNER = "bench-owner"
PASSWORD = "bench password, not secret"
#: Largest link message the real proxy takes (`proxy/link.py`).
MAX_LINK_MESSAGE = 256 * 1024
#: The real proxy's handshake timeout.
HANDSHAKE_S = 10.0
#: A set-up is a failure after this long (the broker gives up on a silent proxy after 10 s).
SET_UP_TIMEOUT_S = 15.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc ------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of process `pid`, KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0])
    return found


def machine_cpu() -> tuple[float, float]:
    """CPU seconds the whole machine has spent busy (every core, every process), and stolen
    by the hypervisor, since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


# -- the store --------------------------------------------------------------------------------


@dataclass
class Seeded:
    token: str
    account_id: str
    #: (telescope id, its proxy's private key)
    telescopes: list[tuple[str, Ed25519PrivateKey]]


async def seed(state_dir: Path, count: int) -> Seeded:
    """The owner, its API token and `count` paired telescopes, in the broker's SQLite file
    (in `state_dir`, which exists)."""
    from scopelink.broker.accounts import Accounts
    from scopelink.broker.service import DATABASE_FILE
    from scopelink.broker.store import open_store
    from scopelink.broker.telescopes import pair_telescope, proxy_key

    store = await open_store(f"sqlite:///{state_dir / DATABASE_FILE}")
    try:
        await store.migrate()
        accounts = Accounts(store)
        account = await accounts.create(OWNER, PASSWORD)
        issued = await accounts.issue_token(account.id, "bench", None)
        keys = [generate_private_key() for _ in range(count)]
        telescopes: list[tuple[str, Ed25519PrivateKey]] = []
        now = time.time()
        async with store.transaction() as tx:
            for n, key in enumerate(keys):
                made = await pair_telescope(
                    tx, proxy_key(public_key_pem(key)), account.id, f"scope {n:04d}", now
                )
                assert not isinstance(made, Exception), made
                telescopes.append((made.id, key))
    finally:
        await store.close()
    return Seeded(issued.token, account.id, telescopes)


def store_counts(state_dir: Path) -> dict[str, Any]:
    """The broker's `connections` and `proxy_presence` rows, read beside it (WAL)."""
    import sqlite3

    from scopelink.broker.service import DATABASE_FILE

    db = sqlite3.connect(f"file:{state_dir / DATABASE_FILE}?mode=ro", uri=True)
    try:
        outcomes = dict(
            db.execute(
                "SELECT coalesce(outcome, '(open)'), count(*) FROM connections GROUP BY 1"
            ).fetchall()
        )
        present = db.execute("SELECT count(*) FROM proxy_presence").fetchone()[0]
    finally:
        db.close()
    return {"connections": outcomes, "presence": present}


# -- the broker's process ---------------------------------------------------------------------


class GcLog:
    """The garbage collector's passes in this process: when, which generation, how long
    (wall clock, and CPU time of the collecting thread, which a busy machine does not inflate)."""

    def __init__(self) -> None:
        self.passes: list[tuple[float, int, float, float, int]] = []
        self._began = (0.0, 0.0)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = (time.perf_counter(), time.thread_time())
        else:
            wall, cpu = time.perf_counter() - self._began[0], time.thread_time() - self._began[1]
            self.passes.append(
                (time.time(), info["generation"], wall * 1000, cpu * 1000, info["collected"])
            )


def serve_broker(
    state: str,
    port: int,
    core: int | None,
    profile: str | None,
    gc_log: str | None,
    gc_freeze: bool = False,
) -> None:
    """One broker instance on 127.0.0.1:`port` until SIGTERM; prints READY once it serves.
    `gc_log`: a JSON file written at exit with the collector's passes and the objects it
    tracked when the broker was ready and at the last SIGHUP. `gc_freeze`: an experiment,
    not what `scopelink broker` does: move everything alive once the broker serves out of
    the collector's sight."""
    import gc

    from scopelink.broker.app import create_broker_app
    from scopelink.settings import BrokerSettings
    from scopelink.web.listen import make_server

    if core is not None:
        os.sched_setaffinity(0, {core})
    settings = BrokerSettings(
        host="127.0.0.1",
        port=port,
        state_dir=state,
        insecure_http=True,
        instance="bench",
        heartbeat_s=15.0,
        # Raised so the load is not refused: every set-up is the same account and address.
        connect_rate_per_min=1e9,
        login_rate_per_min=1e9,
    )
    # As `scopelink broker` serves it: no per-message compression.
    server, sock = make_server(
        create_broker_app(settings), settings.host, settings.port, ws_per_message_deflate=False
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if profile is not None:
            import cProfile

            profiler = cProfile.Profile()
            loop.add_signal_handler(signal.SIGUSR1, profiler.enable)

            def dump() -> None:
                profiler.disable()
                profiler.dump_stats(profile)
                print("PROFILED", flush=True)

            loop.add_signal_handler(signal.SIGUSR2, dump)
        # SIGHUP: count what the collector tracks now (a full pass walks all of it).
        loop.add_signal_handler(signal.SIGHUP, lambda: tracked.update(hup=len(gc.get_objects())))
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.02)
        if gc_freeze:
            gc.collect()
            gc.freeze()
        tracked["ready"] = len(gc.get_objects())
        print(f"READY {sock.getsockname()[1]}", flush=True)
        await serving

    passes = GcLog()
    tracked: dict[str, int] = {}
    gc.callbacks.append(passes)
    try:
        asyncio.run(main())
    finally:
        gc.callbacks.remove(passes)
        if gc_log is not None:
            Path(gc_log).write_text(json.dumps({"passes": passes.passes, "tracked": tracked}))


# -- simulated proxies ------------------------------------------------------------------------


@dataclass
class FleetStats:
    """What the simulated proxies saw."""

    #: Seconds from a dial to `registered`, per link made.
    registrations: list[float] = field(default_factory=list)
    registered_at: list[float] = field(default_factory=list)
    dial_failures: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Links that dropped while the benchmark held them, by close code and reason.
    drops: collections.Counter[str] = field(default_factory=collections.Counter)
    pings: int = 0
    pongs: int = 0
    opens: int = 0
    ends: int = 0
    refused_grants: collections.Counter[str] = field(default_factory=collections.Counter)
    other: collections.Counter[str] = field(default_factory=collections.Counter)


class SimProxy:
    """One telescope's proxy: dial, prove the key, register, hold, answer `open`s."""

    def __init__(
        self, fleet: ProxyFleet, telescope_id: str, key: Ed25519PrivateKey, broker_key: str
    ) -> None:
        self.fleet = fleet
        self.telescope_id = telescope_id
        self.key = key
        self.public_key = public_key_pem(key)
        self.verifier = GrantVerifier(broker_key, telescope_id)
        self.up = asyncio.Event()
        self.convs: set[str] = set()
        self.ws: ClientConnection | None = None

    async def run(self) -> None:
        fleet, stats = self.fleet, self.fleet.stats
        attempt = 0
        while not fleet.stopping:
            started = time.perf_counter()
            try:
                async with fleet.dialing:
                    ws = await connect(
                        fleet.url,
                        open_timeout=HANDSHAKE_S,
                        max_size=MAX_LINK_MESSAGE,
                        ping_interval=None,  # the link's own heartbeats, as the real proxy
                        compression=fleet.compression,
                    )
                    registered = await self._register(ws)
                if registered is None:
                    return  # refused for good, as the real proxy stops
                stats.registrations.append(time.perf_counter() - started)
                stats.registered_at.append(time.perf_counter())
                attempt = 0
                self.ws = ws
                self.up.set()
                await self._hold(ws, registered)
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                stats.dial_failures[_why(exc)] += 1
            except ConnectionClosed as exc:
                stats.dial_failures[f"closed in the handshake: {_close_of(exc)}"] += 1
            self.up.clear()
            self.ws = None
            if not fleet.stopping:
                # The real proxy's redial: 1 s doubling to 30 s, full jitter.
                await asyncio.sleep(min(30.0, 2.0**attempt) * random.random())
                attempt += 1

    async def _register(self, ws: ClientConnection) -> float | None:
        challenge = json.loads(await asyncio.wait_for(ws.recv(), HANDSHAKE_S))
        if challenge.get("type") != "challenge":
            raise ConnectionError(f"broker sent {challenge.get('type')!r} before its challenge")
        text = challenge_text(challenge["nonce"], self.telescope_id)
        await ws.send(
            json.dumps(
                {
                    "type": "register",
                    "telescope_id": self.telescope_id,
                    "public_key": self.public_key,
                    "signature": sign_challenge(self.key, text),
                    "version": LINK_VERSION,
                    "max_peers": 16,
                }
            )
        )
        reply = json.loads(await asyncio.wait_for(ws.recv(), HANDSHAKE_S))
        if reply.get("type") == "registered":
            return float(reply["heartbeat_s"])
        detail = reply.get("problem", {}).get("detail", reply.get("type"))
        self.fleet.stats.dial_failures[f"refused: {detail}"] += 1
        await ws.close()
        return None

    async def _hold(self, ws: ClientConnection, heartbeat_s: float) -> None:
        stats = self.fleet.stats
        beat = asyncio.create_task(self._beat(ws, heartbeat_s))
        try:
            async for raw in ws:
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "pong":
                    stats.pongs += 1
                elif kind == "open":
                    await self._answer(ws, message)
                elif kind == "end":
                    stats.ends += 1
                    self.convs.discard(message.get("conv"))
                elif kind == "ping":
                    await ws.send(json.dumps({"type": "pong", "t": message.get("t", 0.0)}))
                else:
                    stats.other[str(kind)] += 1
        except ConnectionClosed:
            pass
        finally:
            beat.cancel()
            if not self.fleet.stopping:
                stats.drops[_close_of_ws(ws)] += 1

    async def _beat(self, ws: ClientConnection, every_s: float) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.sleep(every_s)
                await ws.send(json.dumps({"type": "ping", "t": time.time()}))
                self.fleet.stats.pings += 1

    async def _answer(self, ws: ClientConnection, message: dict[str, Any]) -> None:
        stats = self.fleet.stats
        stats.opens += 1
        conv = message["conv"]
        try:
            self.verifier.verify(message["grant"])
        except GrantRefused as exc:
            stats.refused_grants[exc.reason[:60]] += 1
            problem = {"title": "Grant refused", "status": 401, "detail": exc.reason}
            error = json.dumps({"type": "error", "problem": problem})
            await ws.send(json.dumps({"type": "relay", "conv": conv, "data": error}))
            await ws.send(json.dumps({"type": "end", "conv": conv, "code": 4401}))
            return
        self.convs.add(conv)
        hello = json.dumps(
            {"type": "hello", "ice_servers": message.get("client_ice_servers", []), "max_peers": 16}
        )
        await ws.send(json.dumps({"type": "relay", "conv": conv, "data": hello}))


class ProxyFleet:
    """`SimProxy`s for the seeded telescopes, dialling at most `concurrency` at once."""

    def __init__(
        self,
        url: str,
        telescopes: list[tuple[str, Ed25519PrivateKey]],
        broker_key: str,
        concurrency: int,
        deflate: bool = False,
    ) -> None:
        self.url = url
        #: permessage-deflate offered (the real proxy offers none; an experiment).
        self.compression: str | None = "deflate" if deflate else None
        self.stats = FleetStats()
        self.stopping = False
        self.dialing = asyncio.Semaphore(concurrency)
        self.proxies = [SimProxy(self, tid, key, broker_key) for tid, key in telescopes]
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(p.run()) for p in self.proxies]

    @property
    def up(self) -> int:
        return sum(p.up.is_set() for p in self.proxies)

    async def all_up(self, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(p.up.wait() for p in self.proxies))

    async def stop(self) -> None:
        """Close every link (a close handshake each), then end the proxies' tasks."""
        self.stopping = True
        links = [p.ws for p in self.proxies if p.ws is not None]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await asyncio.gather(*(ws.close() for ws in links), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# -- simulated browsers -----------------------------------------------------------------------


@dataclass
class SetUp:
    """One browser's set-up: times in seconds from its start (perf_counter)."""

    started: float
    lag: float  # started late by this much (the load generator's own delay)
    opened: float | None = None  # WebSocket handshake done
    hello: float | None = None  # the proxy's `hello` received
    closed: float | None = None  # the socket closed again
    failure: str | None = None


async def set_up(url: str, scheduled: float) -> SetUp:
    """Open a browser's signaling socket, wait for the proxy's `hello`, close it."""
    started = time.perf_counter()
    result = SetUp(started, started - scheduled)
    try:
        async with asyncio.timeout(SET_UP_TIMEOUT_S):
            ws = await connect(url, open_timeout=SET_UP_TIMEOUT_S, ping_interval=None)
            result.opened = time.perf_counter() - started
            try:
                message = json.loads(await ws.recv())
                if message.get("type") == "hello":
                    result.hello = time.perf_counter() - started
                else:
                    problem = message.get("problem", {})
                    with contextlib.suppress(ConnectionClosed):
                        await ws.recv()
                    result.failure = (
                        f"{message.get('type')} {problem.get('status')} "
                        f"{problem.get('title')}, close {ws.close_code}"
                    )
            finally:
                await ws.close()
            result.closed = time.perf_counter() - started
    except TimeoutError:
        result.failure = f"no hello within {SET_UP_TIMEOUT_S:.0f} s"
    except ConnectionClosed as exc:
        result.failure = f"closed before hello: {_close_of(exc)}"
    except InvalidStatus as exc:
        result.failure = f"HTTP {exc.response.status_code}"
    except (OSError, InvalidHandshake) as exc:
        result.failure = _why(exc)
    return result


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{type(exc).__name__} errno {exc.errno}"
    return type(exc).__name__


def _close_of(exc: ConnectionClosed) -> str:
    frame = exc.rcvd
    return "no close frame" if frame is None else f"{frame.code} {frame.reason}"


def _close_of_ws(ws: ClientConnection) -> str:
    return f"{ws.close_code} {ws.close_reason or ''}".strip()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The broker benchmark's broker process.")
    parser.add_argument("role", choices=["broker"])
    parser.add_argument("--state", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--core", type=int, default=None)
    parser.add_argument("--profile", default=None, help="cProfile between SIGUSR1 and SIGUSR2")
    parser.add_argument("--gc-log", default=None, help="the collector's passes, JSON, at exit")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() once serving")
    parsed = parser.parse_args()
    serve_broker(
        parsed.state, parsed.port, parsed.core, parsed.profile, parsed.gc_log, parsed.gc_freeze
    )
