"""`scopelink broker`: its command line, and serving it over HTTPS (a self-signed development
certificate when none is given)."""

from __future__ import annotations

import argparse
import asyncio
import socket
from pathlib import Path

from scopelink.settings import BROKER_PORT, BrokerSettings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], formatter: type) -> None:
    p = sub.add_parser(
        "broker",
        help="run the signaling broker (accounts, pairing, grants, relay of offers)",
        formatter_class=formatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind; 0.0.0.0: every one")
    p.add_argument("--port", type=int, default=BROKER_PORT, help="HTTPS and WSS port")
    p.add_argument(
        "--state-dir",
        default=BrokerSettings().state_dir,
        help="where the signing key, the SQLite database and a development certificate live",
    )
    p.add_argument(
        "--store",
        default="",
        metavar="URL",
        help="postgresql://user@host/db to share one database among instances "
        "(default: SQLite in --state-dir)",
    )
    p.add_argument(
        "--relay",
        choices=("local", "postgres"),
        default="local",
        help="signaling between instances: postgres (LISTEN/NOTIFY on --store) when several run",
    )
    p.add_argument("--instance", default="", help="this instance's name (default: random)")
    p.add_argument(
        "--signing-key",
        metavar="PEM",
        help="the grants' signing key, shared by every instance (default: in --state-dir, "
        "made on first start)",
    )
    p.add_argument("--cert", help="TLS certificate (PEM)")
    p.add_argument("--key", help="TLS private key (PEM)")
    p.add_argument(
        "--insecure-http",
        action="store_true",
        help="plain HTTP (behind a TLS-terminating proxy, or loopback tests only)",
    )
    p.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="HOST",
        help="a name or address browsers and proxies reach this broker by (repeatable): "
        "accepted as Host and put in the development certificate",
    )
    p.add_argument("--no-signup", action="store_true", help="take no new accounts")
    p.add_argument(
        "--grant-ttl",
        type=int,
        default=BrokerSettings().grant_ttl_s,
        metavar="S",
        help="seconds a grant stays valid (it opens a session; the session outlives it)",
    )
    p.add_argument("--stun", action="append", default=[], metavar="URL", help="STUN server")
    p.add_argument("--turn", action="append", default=[], metavar="URL", help="TURN server")
    p.add_argument("--turn-secret", help="the TURN server's shared secret (coturn)")


def settings_from(args: argparse.Namespace) -> BrokerSettings:
    if args.turn and not args.turn_secret:
        raise SystemExit("scopelink: --turn needs --turn-secret")
    if bool(args.cert) != bool(args.key):
        raise SystemExit("scopelink: --cert and --key go together")
    return BrokerSettings(
        host=args.host,
        port=args.port,
        allowed_hosts=list(args.name),
        state_dir=args.state_dir,
        store_url=args.store,
        relay=args.relay,
        instance=args.instance,
        signing_key=args.signing_key,
        tls_cert=args.cert,
        tls_key=args.key,
        insecure_http=args.insecure_http,
        open_signup=not args.no_signup,
        grant_ttl_s=args.grant_ttl,
        stun_urls=args.stun,
        turn_urls=args.turn,
        turn_secret=args.turn_secret,
    )


def run(args: argparse.Namespace) -> None:
    from scopelink.broker.app import create_broker_app
    from scopelink.broker.service import state_dir
    from scopelink.broker.tls import self_signed
    from scopelink.web.listen import make_server

    settings = settings_from(args)
    cert, key = settings.tls_cert, settings.tls_key
    if not settings.insecure_http and cert is None:
        names = ["localhost", "127.0.0.1", "::1", socket.gethostname(), *settings.allowed_hosts]
        if settings.host not in ("0.0.0.0", "::", ""):
            names.append(settings.host)
        made_cert, made_key = self_signed(state_dir(settings), names)
        cert, key = str(made_cert), str(made_key)
        print(
            f"Development certificate (self-signed): {made_cert}\n"
            f"  give it to proxies with --broker-ca {made_cert}",
            flush=True,
        )
    tls = {}
    if cert is not None:
        tls = {
            "ssl_certfile": str(Path(cert).expanduser()),
            "ssl_keyfile": str(Path(key or "").expanduser()),
        }
    app = create_broker_app(settings)
    # No per-message compression: link and signaling messages are small, and its state costs
    # ~40 KiB per connection (half a proxy link's memory; bench:broker).
    server, sock = make_server(
        app, settings.host, settings.port, "info", ws_per_message_deflate=False, **tls
    )
    scheme = "http" if cert is None else "https"
    shown = "localhost" if settings.host in ("127.0.0.1", "0.0.0.0") else settings.host
    print(f"scopelink broker on {scheme}://{shown}:{settings.port}/", flush=True)
    asyncio.run(server.serve(sockets=[sock]))
