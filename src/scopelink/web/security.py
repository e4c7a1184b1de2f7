"""Who may talk to the app, and from where.

A telescope that moves is a physical risk, so by default:
- requests must name a known `Host` (defeats DNS rebinding: a web page on another name cannot
  reach the app through the browser);
- state changes (POST/PUT/PATCH/DELETE) and WebSocket upgrades from a browser must come from the
  app's own origin or a configured one (defeats cross-site requests from any page you open);
- with tokens configured, every API request needs one, and only operator tokens may command.

Who a token names and what a role may do are `scopelink.auth`'s, shared by every entry point;
this module is their HTTP and WebSocket side.
"""

from __future__ import annotations

import json
import socket
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Receive, Scope, Send

from scopelink.auth import Caller, GrantBook, Role, TokenBook
from scopelink.settings import SiteSettings

__all__ = ["Caller", "SecurityMiddleware", "SecurityPolicy", "token_from"]

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_COOKIE = "scopelink_token"
#: API paths answered without a token: who you are, and a proxy's exchange of a broker grant.
OPEN_PATHS = frozenset({"/api/session", "/api/session/grant"})


def _host_name(host_header: str) -> str:
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class SecurityPolicy:
    """The checks, separate from ASGI so transports (HTTP, WebSocket) share them."""

    def __init__(
        self,
        settings: SiteSettings,
        tokens: dict[str, str] | None = None,
        grants: GrantBook | None = None,
    ) -> None:
        names = {"localhost", "127.0.0.1", "[::1]", *map(str.lower, settings.allowed_hosts)}
        if settings.host not in ("0.0.0.0", "::", ""):
            names.add(f"[{settings.host}]" if ":" in settings.host else settings.host)
        else:
            hostname = socket.gethostname().lower()
            names |= {hostname, f"{hostname}.local"}
        self.allowed_hosts = frozenset(names)
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in settings.allowed_origins)
        self.tokens = TokenBook(tokens or {})
        #: A proxy's LAN sessions made from broker grants (`POST /api/session/grant`).
        self.grants = grants

    @property
    def tokens_required(self) -> bool:
        return self.tokens.required

    def host_ok(self, host_header: str | None) -> bool:
        return host_header is not None and _host_name(host_header) in self.allowed_hosts

    def origin_ok(self, origin: str | None, host_header: str, fetch_site: str | None) -> bool:
        """Is a state change from this origin allowed? Non-browser clients send no Origin."""
        if origin is None:
            # Browsers always send Origin on cross-site unsafe requests; Sec-Fetch-Site backs it.
            return fetch_site in (None, "same-origin", "none")
        origin = origin.rstrip("/").lower()
        if origin == "null":
            return False
        if origin in self.allowed_origins:
            return True
        _, _, origin_host = origin.partition("://")
        return origin_host == host_header.strip().lower()

    def caller(self, token: str | None, peer: str) -> Caller | None:
        """The caller for a token (or a LAN session's); None when a token is required and this
        one is unknown."""
        if self.grants is not None:
            caller = self.grants.caller(token)
            if caller is not None:
                return caller
        return self.tokens.caller(token, peer)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}


def token_from(headers: dict[str, str], query: str) -> str | None:
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    values = parse_qs(query).get("token")
    if values:
        return values[0]
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == TOKEN_COOKIE and value:
            return value
    return None


class SecurityMiddleware:
    """Applies SecurityPolicy to every HTTP request and WebSocket; sets `scope["caller"]`."""

    def __init__(self, app: ASGIApp, policy: SecurityPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host")
        if not self.policy.host_ok(host):
            await self._refuse(
                scope,
                receive,
                send,
                421,
                "Unknown host",
                "this server does not answer to that Host name",
            )
            return
        assert host is not None
        unsafe = scope["type"] == "websocket" or scope.get("method") in UNSAFE_METHODS
        if unsafe and not self.policy.origin_ok(
            headers.get("origin"), host, headers.get("sec-fetch-site")
        ):
            await self._refuse(
                scope,
                receive,
                send,
                403,
                "Cross-origin request refused",
                "state changes are only accepted from this app's own pages",
            )
            return
        path: str = scope.get("path", "")
        peer = (scope.get("client") or ("unknown", 0))[0]
        caller = self.policy.caller(
            token_from(headers, scope.get("query_string", b"").decode()), peer
        )
        if caller is None and path.startswith("/api/") and path not in OPEN_PATHS:
            await self._refuse(
                scope, receive, send, 401, "Token required", "this server needs an access token"
            )
            return
        scope.setdefault("state", {})["caller"] = caller or Caller(Role.VIEWER, peer)
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(
        scope: Scope, receive: Receive, send: Send, status: int, title: str, detail: str
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4000 + status % 1000})
            return
        body = json.dumps(
            {"type": "about:blank", "title": title, "status": status, "detail": detail}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
