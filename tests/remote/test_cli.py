"""`scopelink broker` and `scopelink proxy` as a user runs them: real processes, the broker on
HTTPS with its self-signed development certificate, the proxy trusting it, paired by typing
the code it prints, and the telescope then online for its owner."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import ssl
import sys
from pathlib import Path

import httpx

from scopelink.simulator.simulator import Simulator
from tests.remote.conftest import PASSWORD


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scopelink.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def read_until(
    proc: asyncio.subprocess.Process, pattern: str, seen: list[str]
) -> re.Match[str]:
    assert proc.stdout is not None
    async with asyncio.timeout(30):
        while True:
            line = (await proc.stdout.readline()).decode()
            assert line, f"exited before {pattern!r}: {''.join(seen)}"
            seen.append(line)
            if match := re.search(pattern, line):
                return match


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 15)


async def test_a_proxy_pairs_with_a_broker_over_https_by_its_printed_code(
    tmp_path: Path, simulator: Simulator
) -> None:
    port = free_port()
    broker = await start(
        "broker", "--port", str(port), "--state-dir", str(tmp_path / "broker"), "--instance", "t1"
    )
    proxy = None
    seen: list[str] = []
    try:
        cert = (await read_until(broker, r"self-signed\): (\S+)", seen))[1]
        await read_until(broker, r"scopelink broker on https://", seen)
        base = f"https://127.0.0.1:{port}"
        trust = ssl.create_default_context(cafile=cert)
        async with httpx.AsyncClient(base_url=base, verify=trust, timeout=20) as owner:
            for _ in range(100):  # the server may still be binding
                try:
                    r = await owner.post(
                        "/api/accounts", json={"name": "ada", "password": PASSWORD}
                    )
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.1)
            assert r.status_code == 201, r.text
            proxy = await start(
                "proxy",
                "--broker", base,
                "--broker-ca", cert,
                "--telescope", f"127.0.0.1:{simulator.control.port}",
                "--state-dir", str(tmp_path / "proxy"),
                "--host", "127.0.0.1",
                "--port", str(free_port()),
            )  # fmt: skip
            code = (await read_until(proxy, r"type the code\s+(\w{4}-\w{4})", seen))[1]
            r = await owner.post("/api/pairings/claim", json={"code": code, "name": "Backyard"})
            assert r.status_code == 201, r.text
            await read_until(proxy, r"Paired: this is telescope", seen)
            for _ in range(100):
                me = (await owner.get("/api/me")).json()
                if me["telescopes"] and me["telescopes"][0]["online"]:
                    break
                await asyncio.sleep(0.1)
            assert me["telescopes"] == [
                {
                    "id": r.json()["id"],
                    "name": "Backyard",
                    "role": "owner",
                    "online": True,
                    "lan_url": None,  # its page listens on loopback only: nothing to announce
                }
            ]
            key = tmp_path / "proxy" / "identity.pem"
            assert key.stat().st_mode & 0o777 == 0o600
    finally:
        if proxy is not None:
            await stop(proxy)
        assert await stop(broker) == 0, "".join(seen)
