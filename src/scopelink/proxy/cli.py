"""`scopelink proxy`: its command line. First run: make the key pair, show a pairing code and
wait for the owner to type it in the broker's page; every run: serve the telescope's app on the
LAN and hold the link to the broker."""

from __future__ import annotations

import argparse
import asyncio
import secrets
from pathlib import Path

from scopelink.schema.link import PairCode
from scopelink.settings import CONTROL_PORT, ProxySettings, TelescopeTarget


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], formatter: type) -> None:
    p = sub.add_parser(
        "proxy",
        help="run beside the telescope and make it reachable through a broker",
        formatter_class=formatter,
    )
    p.add_argument("--broker", required=True, metavar="URL", help="the broker, https://…")
    p.add_argument("--broker-ca", metavar="PEM", help="trust this certificate for the broker")
    p.add_argument(
        "--telescope",
        metavar="HOST[:PORT]",
        help="the telescope's address (default: find it by discovery)",
    )
    p.add_argument("--key", type=Path, help="PEM private key for the firmware login (7.18+)")
    p.add_argument(
        "--state-dir",
        default=ProxySettings().state_dir,
        help="where the proxy's key pair and pairing are kept",
    )
    p.add_argument("--pair", action="store_true", help="pair again (with a new code)")
    p.add_argument("--host", default="0.0.0.0", help="address of the LAN page (with a token)")
    p.add_argument("--port", type=int, default=8000, help="port of the LAN page")
    p.add_argument(
        "--operator-token", action="append", default=[], metavar="TOKEN", help="LAN page token"
    )


def settings_from(args: argparse.Namespace) -> ProxySettings:
    key = args.key.read_bytes() if args.key else None
    targets = []
    if args.telescope:
        spec = args.telescope
        host, _, port = spec.rpartition(":") if spec.count(":") == 1 else (spec, "", "")
        targets.append(
            TelescopeTarget(host=host, control_port=int(port or CONTROL_PORT), key_pem=key)
        )
    tokens = {t: "operator" for t in args.operator_token}
    if not tokens and args.host not in ("127.0.0.1", "localhost", "::1"):
        token = secrets.token_urlsafe(18)
        tokens[token] = "operator"
        print(f"LAN page operator token (open it with ?token=...): {token}", flush=True)
    return ProxySettings(
        host=args.host,
        port=args.port,
        telescopes=targets,
        discover=not targets,
        tokens=tokens,
        broker_url=args.broker.rstrip("/"),
        state_dir=args.state_dir,
        broker_ca=args.broker_ca,
        audit_log=str(Path(args.state_dir).expanduser() / "audit.jsonl"),
        idempotency_journal=str(Path(args.state_dir).expanduser() / "commands.jsonl"),
    )


def _show(code: PairCode) -> None:
    minutes = int(code.expires_in // 60)
    print(
        f"\n  Pair this telescope: sign in at {code.verification_url}\n"
        f"  and type the code  {code.user_code}  (valid {minutes} minutes)\n",
        flush=True,
    )


def run(args: argparse.Namespace) -> None:
    from scopelink.auth import GrantBook
    from scopelink.broker.tls import client_context
    from scopelink.grants import GrantVerifier
    from scopelink.proxy.identity import ProxyIdentity
    from scopelink.proxy.lan import lan_hostname
    from scopelink.proxy.pairing import pair
    from scopelink.proxy.run import broker_link, lan_presence
    from scopelink.web.app import create_app
    from scopelink.web.listen import make_server

    settings = settings_from(args)
    identity = ProxyIdentity(Path(settings.state_dir).expanduser())
    secure = settings.broker_url.startswith("https")
    context = client_context(settings.broker_ca) if secure else None
    pairing = identity.pairing()
    if pairing is None or args.pair or pairing.broker_url != settings.broker_url:
        pairing = asyncio.run(pair(settings.broker_url, identity, _show, ssl_context=context))
        print(f"Paired: this is telescope {pairing.telescope_id} on the broker.", flush=True)
    # The page answers to its mDNS name, and takes the broker's grants (a direct connection).
    settings.allowed_hosts.append(lan_hostname(pairing.telescope_id))
    grants = GrantBook(GrantVerifier(pairing.broker_key, pairing.telescope_id))
    beside = [
        lan_presence(pairing.telescope_id, settings.port, settings.host),
        broker_link(identity, pairing, ssl_context=context),
    ]
    app = create_app(settings, beside=beside, grants=grants)
    server, sock = make_server(app, settings.host, settings.port, "info")
    print(f"scopelink proxy: LAN page on port {settings.port}; linking to {pairing.broker_url}")
    asyncio.run(server.serve(sockets=[sock]))
