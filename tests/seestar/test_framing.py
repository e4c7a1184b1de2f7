"""Properties of the control channel's framing: splits, coalescing and garbage lose nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scopelink.seestar.control import ControlClient
from scopelink.seestar.framing import LineBuffer
from scopelink.seestar.messages import encode_json_line, parse_request
from scopelink.settings import Backoff

HOSTILE_LINES = [
    b"null",
    b"[]",
    b'{"id":"seven"}',
    b'{"Event":5}',
    b'{"jsonrpc":"2.0"}',
    b'{"jsonrpc":"2.0","id":1,"code":0,"result":"late"}',
    b'{"jsonrpc":"2.0","id":true,"code":0}',
    b"\xff\xfe\x00 not utf-8",
    b'{"unterminated": ',
]

garbage = st.one_of(
    st.sampled_from(HOSTILE_LINES),
    st.binary(min_size=1, max_size=120).map(lambda b: b.replace(b"\n", b" ")),
)
json_lines = st.lists(
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=20), max_size=4).map(
        lambda d: json.dumps(d, separators=(",", ":")).encode()
    ),
    max_size=20,
)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(lines=json_lines, cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_line_buffer_returns_every_line_whatever_the_read_sizes(
    lines: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(line + b"\r\n" for line in lines)
    buf = LineBuffer()
    out: list[bytes] = []
    for piece in _split(stream, cuts):
        out.extend(buf.feed(piece))
    assert out == [line for line in lines if line.strip()]


def test_line_buffer_drops_an_oversized_line_and_keeps_the_next() -> None:
    buf = LineBuffer(max_line=100)
    out = buf.feed(b"x" * 70)
    out += buf.feed(b"y" * 70)  # past the limit with no terminator yet
    out += buf.feed(b"z" * 10 + b"\r\n" + b'{"ok":1}\r\n')
    assert out == [b'{"ok":1}']
    assert buf.oversized == 1


class ScriptedTelescope:
    """A raw server answering each request, with garbage and events mixed in, written in pieces."""

    def __init__(self, rng: random.Random, noise: list[bytes]) -> None:
        self.rng = rng
        self.noise = noise

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buf = LineBuffer()
        try:
            while data := await reader.read(65536):
                replies: list[bytes] = []
                for line in buf.feed(data):
                    request = parse_request(line)
                    if request.method == "get_device_state":
                        result: object = {"device": {"firmware_ver_int": 2718}}
                    else:
                        result = {"echo": request.id, "params": request.params}
                    reply = {"jsonrpc": "2.0", "method": request.method, "result": result}
                    reply |= {"code": 0, "id": request.id}
                    event = {"Event": "PiStatus", "Timestamp": "1.0", "temp": 40.0}
                    noise = self.rng.sample(self.noise, k=min(len(self.noise), 2))
                    replies.append(
                        b"".join(n + b"\r\n" for n in noise)
                        + encode_json_line(event)
                        + encode_json_line(reply)
                    )
                self.rng.shuffle(replies)  # replies may come back in any order
                stream = b"".join(replies)
                cuts = [self.rng.randrange(len(stream) + 1) for _ in range(8)]
                for piece in _split(stream, cuts):
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


async def _exchange(seed: int, noise: list[bytes], calls: int) -> None:
    telescope = ScriptedTelescope(random.Random(seed), noise)
    server = await asyncio.start_server(telescope.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = ControlClient("127.0.0.1", port, backoff=Backoff(0.05, 0.2))
    try:
        await client.connect(5)
        results = await asyncio.gather(
            *(client.call("echo", {"n": n}, timeout=5) for n in range(calls))
        )
        for n, result in enumerate(results):
            assert result["params"] == {"n": n}, "every reply reaches the call that asked for it"
        assert client.connected
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(min_value=0, max_value=2**32),
    noise=st.lists(garbage, min_size=1, max_size=6),
    calls=st.integers(min_value=1, max_value=40),
)
def test_client_matches_every_reply_despite_splits_coalescing_and_garbage(
    seed: int, noise: list[bytes], calls: int
) -> None:
    asyncio.run(_exchange(seed, noise, calls))
