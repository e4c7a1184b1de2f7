"""The `scopelink` command.

`serve` runs the web app (with the built-in simulator when no telescope is given), `simulate`
runs a simulated telescope on the real ports, `discover` finds telescopes on the network,
`broker` runs the signaling broker for remote access, and `proxy` runs beside a telescope and
links it to a broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from scopelink.broker import cli as broker_cli
from scopelink.proxy import cli as proxy_cli
from scopelink.seestar.models import DEFAULT_MODEL, MODELS
from scopelink.settings import (
    CONTROL_PORT,
    DISCOVERY_PORT,
    IMAGING_PORT,
    RTSP_PORT,
    WIDE_IMAGING_PORT,
    WIDE_RTSP_PORT,
)
from scopelink.simulator.firmware import DEFAULT_PROFILE, PROFILES


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default, unless it has none worth saying (off, empty)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if (
            default is None
            or default is False
            or default == []
            or default == ""
            or "%(default)" in (action.help or "")
        ):
            return action.help
        return super()._get_help_string(action)


def _simulate_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate", help="run a simulated Seestar on the real ports", formatter_class=_HelpFormatter
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument(
        "--control-port",
        type=int,
        default=CONTROL_PORT,
        help="control port (JSON lines); 0: any free port",
    )
    p.add_argument(
        "--imaging-port",
        type=int,
        default=IMAGING_PORT,
        help="imaging port (preview frames); 0: any free port",
    )
    p.add_argument(
        "--discovery-port",
        type=int,
        default=DISCOVERY_PORT,
        help="UDP port answering discovery probes",
    )
    p.add_argument("--no-discovery", action="store_true", help="do not answer discovery probes")
    p.add_argument(
        "--firmware",
        choices=sorted(PROFILES),
        default=DEFAULT_PROFILE,
        help="firmware profile",
    )
    p.add_argument("--fps", type=float, default=2.0, help="preview frame rate, 0.5..30")
    p.add_argument("--seed", type=int, default=0, help="star field and noise seed")
    p.add_argument("--lat", type=float, default=52.0, help="site latitude, degrees north")
    p.add_argument("--lon", type=float, default=4.9, help="site longitude, degrees east")
    p.add_argument("--serial", default="4ddb0535", help="serial number it reports (and its SSID)")
    p.add_argument("--charging", action="store_true", help="on external power: battery charges")
    p.add_argument("--key", type=Path, help="PEM private key of the login key pair")
    p.add_argument(
        "--write-key", type=Path, help="save the login private key here (for a client's --key)"
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault: delay=S, stall=S, split, coalesce, malformed=P",
    )
    p.add_argument(
        "--model",
        choices=sorted(MODELS),
        default=DEFAULT_MODEL,
        help="Seestar model: its product name and sensor; the S30 models add a wide camera "
        f"(RTSP {WIDE_RTSP_PORT}, imaging {WIDE_IMAGING_PORT}; free ports when --rtsp-port "
        "and --imaging-port are 0)",
    )
    p.add_argument(
        "--rtsp-port",
        type=int,
        default=RTSP_PORT,
        help="RTSP port of the live video (rtsp://HOST:PORT/stream) in the Moon, Sun, planet "
        "and scenery views; 0: any free port",
    )
    p.add_argument(
        "--video-fps",
        type=float,
        default=30.0,
        help="frame rate of the RTSP video, 1..60",
    )


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the web app", formatter_class=_HelpFormatter)
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind; 0.0.0.0 serves the LAN (with a token)"
    )
    p.add_argument("--port", type=int, default=8000, help="HTTP port of the web app and its API")
    p.add_argument(
        "--telescope",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a telescope to connect to (repeatable); none: the built-in simulator",
    )
    p.add_argument("--discover", action="store_true", help="find telescopes on the network")
    p.add_argument("--key", type=Path, help="PEM private key for the firmware login (7.18+)")
    p.add_argument(
        "--simulator-fps",
        type=float,
        default=5.0,
        help="preview frame rate of the built-in simulator (0.5..30; no --telescope only)",
    )
    p.add_argument(
        "--simulator-model",
        choices=sorted(MODELS),
        default=DEFAULT_MODEL,
        help="model of the built-in simulator; the S30 models add a wide camera (?camera=wide)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another Host name the app answers to (e.g. a reverse proxy's)",
    )
    p.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="another origin allowed to send commands, e.g. https://example.org",
    )
    p.add_argument(
        "--operator-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a token that may command the telescope (repeatable)",
    )
    p.add_argument(
        "--viewer-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a token that may only watch (repeatable)",
    )
    p.add_argument(
        "--stun",
        action="append",
        default=[],
        metavar="URL",
        help="a STUN server for WebRTC, e.g. stun:stun.example.org:3478 (repeatable; default none)",
    )
    p.add_argument(
        "--turn",
        action="append",
        default=[],
        metavar="URL",
        help="a TURN server for WebRTC, e.g. turn:turn.example.org:3478 (repeatable; "
        "needs --turn-secret)",
    )
    p.add_argument(
        "--turn-secret",
        metavar="SECRET",
        help="the TURN server's shared secret (coturn static-auth-secret)",
    )
    p.add_argument(
        "--max-peers",
        type=int,
        default=16,
        metavar="N",
        help="concurrent WebRTC viewers sent video (default: %(default)s)",
    )
    p.add_argument(
        "--max-channel-peers",
        type=int,
        default=256,
        metavar="N",
        help="concurrent WebRTC peers with data channels only, control and status without "
        "video (default: %(default)s)",
    )
    p.add_argument(
        "--fixed-bitrate",
        action="store_true",
        help="keep each WebRTC tier at its starting bitrate (no adaptation to the viewers' links)",
    )
    p.add_argument(
        "--no-passthrough",
        action="store_true",
        help="re-encode the telescope's own video (Moon, Sun, planet, scenery views) instead of "
        "sending its H.264 to browsers unchanged",
    )
    p.add_argument(
        "--no-webrtc",
        action="store_true",
        help="the UI starts with MJPEG (users may still switch to WebRTC)",
    )


def _serve(args: argparse.Namespace) -> None:
    import secrets

    from scopelink.settings import ServeSettings, TelescopeTarget
    from scopelink.web.server import run

    if args.turn and not args.turn_secret:
        raise SystemExit("scopelink: --turn needs --turn-secret")
    if args.max_peers < 1:
        raise SystemExit("scopelink: --max-peers must be at least 1")
    if args.max_channel_peers < 0:
        raise SystemExit("scopelink: --max-channel-peers must not be negative")
    key = args.key.read_bytes() if args.key else None
    targets = []
    for spec in args.telescope:
        host, _, port = spec.rpartition(":") if spec.count(":") == 1 else (spec, "", "")
        targets.append(
            TelescopeTarget(host=host, control_port=int(port or CONTROL_PORT), key_pem=key)
        )
    tokens = {t: "operator" for t in args.operator_token} | {t: "viewer" for t in args.viewer_token}
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    if not tokens and not loopback:
        # Reachable from the network: never without a token.
        token = secrets.token_urlsafe(18)
        tokens[token] = "operator"
        print(f"Operator token (open the app with ?token=...): {token}", flush=True)
    settings = ServeSettings(
        host=args.host,
        port=args.port,
        telescopes=targets,
        discover=args.discover,
        simulator_fps=args.simulator_fps,
        simulator_model=args.simulator_model,
        allowed_hosts=args.allowed_host,
        allowed_origins=args.allowed_origin,
        tokens=tokens,
        stun_urls=args.stun,
        turn_urls=args.turn,
        turn_secret=args.turn_secret,
        max_peers=args.max_peers,
        max_channel_peers=args.max_channel_peers,
        webrtc_adaptive=not args.fixed_bitrate,
        webrtc_passthrough=not args.no_passthrough,
        webrtc_default=not args.no_webrtc,
    )
    print(f"scopelink on http://{'localhost' if loopback else args.host}:{args.port}/", flush=True)
    run(settings)


def _discover_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "discover", help="find Seestars on the local network", formatter_class=_HelpFormatter
    )
    p.add_argument(
        "--address",
        default="255.255.255.255",
        help="where to send the probe (255.255.255.255: broadcast)",
    )
    p.add_argument(
        "--port", type=int, default=DISCOVERY_PORT, help="the telescopes' discovery port"
    )
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to listen for replies")


async def _discover(args: argparse.Namespace) -> int:
    from scopelink.seestar.discovery import scan

    report = await scan(args.address, args.port, timeout=args.timeout)
    for t in report.telescopes:
        print(f"{t.serial}\t{t.model}\t{t.ip}")
    if report.malformed or report.ignored:
        print(
            f"({report.malformed} malformed and {report.ignored} other replies skipped)",
            file=sys.stderr,
        )
    if not report.telescopes:
        print("no telescope answered", file=sys.stderr)
        return 1
    return 0


async def _simulate(args: argparse.Namespace) -> None:
    from scopelink.simulator.simulator import Simulator, SimulatorConfig

    if not 0.5 <= args.fps <= 30:
        raise SystemExit("--fps must be within 0.5..30")
    if not 1 <= args.video_fps <= 60:
        raise SystemExit("--video-fps must be within 1..60")
    config = SimulatorConfig(
        host=args.host,
        control_port=args.control_port,
        imaging_port=args.imaging_port,
        discovery_port=None if args.no_discovery else args.discovery_port,
        profile=args.firmware,
        serial=args.serial,
        seed=args.seed,
        fps=args.fps,
        lat_deg=args.lat,
        lon_deg=args.lon,
        key_pem=args.key.read_bytes() if args.key else None,
        faults=args.fault,
        charging=args.charging,
        model=args.model,
        rtsp_port=args.rtsp_port,
        # Free ports asked for: the S30's wide camera takes free ones too.
        wide_rtsp_port=0 if args.rtsp_port == 0 else WIDE_RTSP_PORT,
        wide_imaging_port=0 if args.imaging_port == 0 else WIDE_IMAGING_PORT,
        video_fps=args.video_fps,
    )
    simulator = Simulator(config)
    if args.write_key:
        simulator.write_key(args.write_key)
    await simulator.start()
    wide = (
        f", wide camera: rtsp {simulator.wide_rtsp.port}, imaging {simulator.wide_imaging.port}"
        if simulator.wide_rtsp is not None and simulator.wide_imaging is not None
        else ""
    )
    print(
        f"Simulated Seestar {simulator.model.name}, firmware {simulator.profile.version}, on "
        f"{config.host}: control {simulator.control.port}, imaging {simulator.imaging.port}, "
        f"discovery {simulator.discovery.port if simulator.discovery else 'off'}, "
        f"rtsp {simulator.rtsp.port}{wide}. Ctrl-C stops.",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await simulator.stop()


def build_parser() -> argparse.ArgumentParser:
    """The command line: `serve`, `simulate`, `discover`, `broker` and `proxy`."""
    parser = argparse.ArgumentParser(prog="scopelink", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _simulate_parser(sub)
    _discover_parser(sub)
    broker_cli.add_parser(sub, _HelpFormatter)
    proxy_cli.add_parser(sub, _HelpFormatter)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            _serve(args)
        elif args.command == "simulate":
            asyncio.run(_simulate(args))
        elif args.command == "discover":
            return asyncio.run(_discover(args))
        elif args.command == "broker":
            broker_cli.run(args)
        elif args.command == "proxy":
            proxy_cli.run(args)
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError) as exc:
        print(f"scopelink: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
