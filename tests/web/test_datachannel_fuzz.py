"""Hostile data-channel messages, made by Hypothesis, sent over a real channel to the real app.

Every message gets its answer (an error, an ack, a pong, a lease state) before the next; a
command sent twice with one id runs once; nothing crashes; the session stays up and works.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scopelink.settings import ServeSettings
from tests.web.conftest import RunningApp, serve
from tests.web.dc_client import DcClient

EXAMPLES = 150
#: Examples a second: each is two messages (it and the marker ping), under the endpoint's 50.
PACE_S = 0.05

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
names = st.sampled_from(
    ["stop", "set_gain", "focus", "move", "tracking", "goto", "park", "launch", "", "type"]
)
params = st.dictionaries(
    st.sampled_from(["gain", "delta", "direction", "speed", "duration_s", "on", "target", "x"]),
    json_values,
    max_size=3,
)
protocol_like = st.fixed_dictionaries(
    {"v": st.sampled_from([1, 1, 1, 2, "1", None])},
    optional={
        "type": st.sampled_from(["hello", "command", "ping", "lease", "resync", "offer", "x"]),
        "id": st.text(max_size=70),
        "name": names,
        "params": params | json_values,
        "t": json_values,
        "action": st.sampled_from(["take", "release", "grant", "deny", "steal", 3]),
        "client_id": st.text(max_size=70),
        "deadline_ms": json_values,
        "sdp": st.text(max_size=30),
    },
)
commands = st.builds(
    lambda name, p, n: {"v": 1, "type": "command", "id": f"fuzz-{n}", "name": name, "params": p},
    names,
    params,
    st.integers(0, 10**9),
)
messages = st.one_of(
    st.text(max_size=60),
    json_values.map(json.dumps),
    protocol_like.map(json.dumps),
    commands.map(json.dumps),
)


def made(strategy: Any, count: int) -> list[Any]:
    """`count` examples of `strategy`, the same on every run (Hypothesis makes them here; the
    async test then sends them over one real connection)."""
    out: list[Any] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: Any) -> None:
        out.append(value)

    collect()
    return out[:count]


@pytest.fixture
async def running() -> AsyncIterator[RunningApp]:
    async with serve(ServeSettings(simulator_fps=1.0, command_rate=1000.0)) as app:
        yield app


async def test_hostile_messages_each_get_an_answer_and_nothing_runs_twice(
    running: RunningApp,
) -> None:
    client = DcClient(running.base_url, name="Fuzzer")
    try:
        await client.connect(video=False)
        unanswered = []
        for n, raw in enumerate(made(messages, EXAMPLES)):
            repeated = '"type": "command"' in raw and '"v": 1' in raw
            for _ in range(2 if repeated else 1):
                client.send(raw)
            marker = 1_000_000 + n
            client.send({"v": 1, "type": "ping", "t": marker})
            await client.next("pong", lambda m, k=marker: m["t"] == k, timeout=10)
            # Everything before the marker was handled: it answered, or it was a message
            # whose answer comes elsewhere or later (resync, offer).
            answered = [m for m in client.received if m.get("type") != "result"]
            quiet = any(f'"type": "{kind}"' in raw for kind in ("resync", "offer", "ping"))
            if not answered and not quiet:
                unanswered.append(raw)
            client.received[:] = [m for m in client.received if m.get("type") == "result"]
            await asyncio.sleep(PACE_S)
        assert not unanswered, f"no answer to {unanswered[:5]}"

        # One id sent twice ran once: both its results name one execution.
        await asyncio.sleep(1.0)
        results: dict[str, set[str | None]] = {}
        for m in client.received:
            ack = m.get("ack") or {}
            results.setdefault(m["id"], set()).add(ack.get("command_id"))
        assert all(len(ids) == 1 for ids in results.values()), results

        # Still up, still useful.
        client.send({"v": 1, "type": "lease", "action": "take"})
        _, result = await client.run("set_gain", {"gain": 91})
        assert result["ok"] and running.simulator.telescope.gain == 91
    finally:
        await client.close()
