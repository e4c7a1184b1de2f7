"""Messages of the control channel: requests, responses and events, and their encoding.

The telescope writes compact JSON; a response carries `jsonrpc`, `id`, `code` and either `result`
or `error`; an event carries `Event`. When a line has both `Event` and `id`, it is an event.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from scopelink.seestar.errors import ProtocolError

#: Methods whose params never get the firmware's "verify" marker.
AUTH_METHODS = frozenset({"get_verify_str", "verify_client", "pi_is_verified"})


@dataclass(frozen=True, slots=True)
class Request:
    """A request from a client."""

    id: int
    method: str
    params: Any = None
    has_params: bool = False


@dataclass(frozen=True, slots=True)
class Response:
    """The telescope's answer to one request."""

    id: int
    method: str
    code: int
    result: Any = None
    error: str | None = None
    timestamp: str | None = None

    @property
    def ok(self) -> bool:
        return self.code == 0 and self.error is None


@dataclass(frozen=True, slots=True)
class RawEvent:
    """An unsolicited event, as received."""

    name: str
    data: dict[str, Any]


def format_uptime(seconds: float) -> str:
    """The firmware's `Timestamp`: seconds since boot as a string with 9 decimals."""
    return f"{seconds:.9f}"


def _default(obj: Any) -> Any:
    raise TypeError(f"cannot encode {type(obj).__name__}")


def encode_json_line(obj: dict[str, Any]) -> bytes:
    """Compact JSON plus `\\r\\n`, as the telescope writes it."""
    return json.dumps(obj, separators=(",", ":"), default=_default).encode() + b"\r\n"


def encode_request(request: Request) -> bytes:
    obj: dict[str, Any] = {"id": request.id, "method": request.method}
    if request.has_params:
        obj["params"] = request.params
    return encode_json_line(obj)


def decode_json(line: bytes) -> dict[str, Any]:
    """Parse one line as a JSON object or raise ProtocolError."""
    try:
        obj = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"malformed JSON line: {line[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def parse_request(line: bytes) -> Request:
    obj = decode_json(line)
    method = obj.get("method")
    rid = obj.get("id", 0)
    if not isinstance(method, str) or not method:
        raise ProtocolError("request has no method")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise ProtocolError("request id must be an integer")
    return Request(id=rid, method=method, params=obj.get("params"), has_params="params" in obj)


def parse_message(line: bytes) -> Response | RawEvent:
    """Classify and parse one line from the telescope."""
    obj = decode_json(line)
    name = obj.get("Event")
    if isinstance(name, str):
        return RawEvent(name=name, data=obj)
    rid = obj.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool):
        raise ProtocolError(f"message is neither an event nor a response: {line[:80]!r}")
    error = obj.get("error")
    code = obj.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        # Some simulators omit `code`; an `error` still means failure.
        code = 0 if error is None else -1
    if error is not None and not isinstance(error, str):
        error = json.dumps(error)
    if code != 0 and error is None:
        error = "error"
    ts = obj.get("Timestamp")
    return Response(
        id=rid,
        method=str(obj.get("method", "")),
        code=code,
        result=obj.get("result"),
        error=error,
        timestamp=ts if isinstance(ts, str) else None,
    )


def response_dict(
    request: Request, uptime: float, result: Any = 0, code: int = 0, error: str | None = None
) -> dict[str, Any]:
    """The firmware's response shape; `result` is dropped on error."""
    obj: dict[str, Any] = {
        "jsonrpc": "2.0",
        "Timestamp": format_uptime(uptime),
        "method": request.method,
    }
    if error is None and code == 0:
        obj["result"] = result
    else:
        obj["error"] = error or "fail to operate"
    obj["code"] = code
    obj["id"] = request.id
    return obj


def event_dict(name: str, uptime: float, /, **fields: Any) -> dict[str, Any]:
    return {"Event": name, "Timestamp": format_uptime(uptime), **fields}


def finite(value: Any) -> float:
    """A finite float from a JSON number, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a number, got {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise ValueError("number is not finite")
    return f
