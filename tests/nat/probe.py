"""Small network probes run inside a namespace (`python -m tests.nat.probe ...`), each printing
JSON lines; no aiortc, so they start fast.

- `map SERVER PORT [PORT ...]`: one UDP socket sends a STUN Binding request to SERVER on each
  port (coturn answers on 3478 and on its RFC 5780 alternate port 3479) and prints
  `{"local": port, "mapped": [[ip, port] | null, ...]}`: the NAT's mapping per destination.
  Then it waits `--listen` seconds for any other datagram on the same socket and prints
  `{"unsolicited": [ip, port] | null}`: whether the NAT's filtering let a stranger in.
- `stun-server ADDRESS PORT [PORT ...]`: answer STUN Binding requests on each port (prints
  `{"ready": true}` once bound, then serves until killed): two destinations for `map`.
- `send HOST PORT --from ADDRESS`: one datagram to HOST:PORT from a fresh socket on ADDRESS.
- `turn-peers SERVER PORT USERNAME PASSWORD PEER...`: allocate on a TURN server over UDP, then
  ask for a channel to each PEER (ip:port); prints `{"peer": ..., "error": code | null}` for each
  (coturn answers 403 for a peer in its denied-peer-ip list).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time

from aioice import stun
from aioice.turn import TurnClientUdpProtocol


def _binding(sock: socket.socket, server: tuple[str, int], timeout: float) -> list[object] | None:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    deadline = time.monotonic() + timeout
    attempt = 0
    while time.monotonic() < deadline:
        sock.sendto(bytes(request), server)
        sock.settimeout(min(0.2 * 2**attempt, max(0.01, deadline - time.monotonic())))
        attempt += 1
        try:
            while True:
                data, _ = sock.recvfrom(2048)
                with_id = stun.parse_message(data)
                if with_id.transaction_id == request.transaction_id:
                    host, port = with_id.attributes["XOR-MAPPED-ADDRESS"]
                    return [host, port]
        except (TimeoutError, ValueError):
            continue
    return None


def probe_map(args: argparse.Namespace) -> None:
    family = socket.AF_INET6 if ":" in args.server else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        local = sock.getsockname()[1]
        mapped = [_binding(sock, (args.server, port), args.timeout) for port in args.ports]
        print(json.dumps({"local": local, "mapped": mapped}), flush=True)
        sock.settimeout(args.listen)
        try:
            _, sender = sock.recvfrom(2048)
            print(json.dumps({"unsolicited": [sender[0], sender[1]]}), flush=True)
        except TimeoutError:
            print(json.dumps({"unsolicited": None}), flush=True)


async def stun_server(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()

    class Responder(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            try:
                request = stun.parse_message(data)
            except ValueError:
                return
            if request.message_class != stun.Class.REQUEST:
                return
            response = stun.Message(
                message_method=request.message_method,
                message_class=stun.Class.RESPONSE,
                transaction_id=request.transaction_id,
            )
            response.attributes["XOR-MAPPED-ADDRESS"] = (addr[0], addr[1])
            self.transport.sendto(bytes(response), addr)  # type: ignore[attr-defined]

    for port in args.ports:
        await loop.create_datagram_endpoint(Responder, local_addr=(args.address, port))
    print(json.dumps({"ready": True}), flush=True)
    await asyncio.Event().wait()


def probe_send(args: argparse.Namespace) -> None:
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((args.source, 0))
        for _ in range(args.count):
            sock.sendto(b"stranger", (args.host, args.port))
            time.sleep(0.05)
    print(json.dumps({"sent": args.count}), flush=True)


async def probe_turn_peers(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    server = (args.server, args.port)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            server, username=args.username, password=args.password, lifetime=60,
            channel_refresh_time=50,
        ),
        remote_addr=server,
    )  # fmt: skip
    try:
        try:
            relayed = await protocol.connect()
        except stun.TransactionFailed as exc:
            print(json.dumps({"allocation_error": exc.response.error_code}), flush=True)
            return
        print(json.dumps({"relayed": list(relayed)}), flush=True)
        for number, peer in enumerate(args.peers):
            host, _, port = peer.rpartition(":")
            try:
                await protocol.channel_bind(0x4000 + number, (host, int(port)))
                error = None
            except stun.TransactionFailed as exc:
                error = exc.response.error_code
            except stun.TransactionTimeout:
                error = "timeout"
            print(json.dumps({"peer": peer, "error": error}), flush=True)
    finally:
        transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    mapping = commands.add_parser("map")
    mapping.add_argument("server")
    mapping.add_argument("ports", type=int, nargs="+")
    mapping.add_argument("--timeout", type=float, default=2.0)
    mapping.add_argument("--listen", type=float, default=1.0)
    server = commands.add_parser("stun-server")
    server.add_argument("address")
    server.add_argument("ports", type=int, nargs="+")
    send = commands.add_parser("send")
    send.add_argument("host")
    send.add_argument("port", type=int)
    send.add_argument("--from", dest="source", required=True)
    send.add_argument("--count", type=int, default=3)
    turn = commands.add_parser("turn-peers")
    turn.add_argument("server")
    turn.add_argument("port", type=int)
    turn.add_argument("username")
    turn.add_argument("password")
    turn.add_argument("peers", nargs="*")
    args = parser.parse_args()
    if args.command == "map":
        probe_map(args)
    elif args.command == "stun-server":
        asyncio.run(stun_server(args))
    elif args.command == "send":
        probe_send(args)
    else:
        asyncio.run(probe_turn_peers(args))


if __name__ == "__main__":
    main()
    sys.exit(0)
