"""The `scopelink` command as a user runs it: a real process on real ports."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys

import pytest

from scopelink.cli import build_parser
from scopelink.seestar.commands import SeestarCommands
from scopelink.seestar.control import ControlClient
from scopelink.seestar.discovery import scan

READY = re.compile(rb"control (\d+), imaging (\d+), discovery (\d+)")


async def _start_simulator(*args: str) -> tuple[asyncio.subprocess.Process, list[int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scopelink.cli",
        "simulate",
        "--control-port",
        "0",
        "--imaging-port",
        "0",
        "--discovery-port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    match = READY.search(line)
    assert match, line
    return proc, [int(p) for p in match.groups()]


async def test_simulate_command_serves_a_telescope_and_stops_cleanly() -> None:
    proc, (control, _imaging, discovery) = await _start_simulator("--firmware", "legacy")
    try:
        client = ControlClient("127.0.0.1", control)
        await client.connect(10)
        try:
            assert client.firmware == 2225
            assert (await SeestarCommands(client).get_disk_volume()).total_mb > 0
        finally:
            await client.close()
        report = await scan("127.0.0.1", discovery, timeout=1.0)
        assert [t.serial for t in report.telescopes] == ["4ddb0535"]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0


async def test_simulate_command_injects_faults_from_the_command_line() -> None:
    proc, (control, _imaging, _discovery) = await _start_simulator("--fault", "delay=0.4")
    try:
        client = ControlClient("127.0.0.1", control)
        await client.connect(10)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            await client.call("get_focuser_position")
            assert loop.time() - start >= 0.4
        finally:
            await client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 10)


async def test_simulate_command_rejects_an_unknown_fault() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scopelink.cli",
        "simulate",
        "--fault",
        "explode",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 1
    assert b"unknown fault 'explode'" in err


async def test_serve_stops_promptly_with_viewers_connected() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "scopelink.cli",
        "serve",
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        import httpx

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            for _ in range(100):
                try:
                    if (await http.get("/api/telescopes")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            async with (
                http.stream("GET", "/api/telescopes/simulator/stream.mjpeg") as mjpeg,
                http.stream("GET", "/api/telescopes/simulator/events") as events,
            ):
                assert mjpeg.status_code == 200 and events.status_code == 200
                proc.send_signal(signal.SIGINT)
                assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
    assert proc.stderr is not None
    assert b"Traceback" not in await proc.stderr.read()


def test_every_flag_says_what_it_does_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"scopelink {name} {action.option_strings} has no help"
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--port PORT HTTP port of the web app and its API (default: 8000)" in shown
    assert "(default: 5.0)" in shown  # --simulator-fps


def test_the_broker_and_proxy_commands_default_to_their_settings_defaults() -> None:
    """What a user gets without flags is what the settings say (a default taken from the class
    of a slots dataclass would be a descriptor, not the value)."""
    from scopelink.broker import cli as broker_cli
    from scopelink.proxy import cli as proxy_cli
    from scopelink.settings import BrokerSettings, ProxySettings

    broker = broker_cli.settings_from(build_parser().parse_args(["broker"]))
    assert broker == BrokerSettings()
    proxy = proxy_cli.settings_from(
        build_parser().parse_args(["proxy", "--broker", "https://b.example", "--host", "127.0.0.1"])
    )
    defaults = ProxySettings()
    assert proxy.state_dir == defaults.state_dir and proxy.port == defaults.port
    assert proxy.broker_url == "https://b.example" and proxy.discover
