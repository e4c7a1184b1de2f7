"""How a refused message is described, on every transport: the problem type's namespace and a
validation error named field by field. No web framework: the proxy and the broker use it too."""

from __future__ import annotations

from pydantic import ValidationError

#: The namespace of every problem's `type` (RFC 9457), followed by the problem's kind.
PROBLEM_TYPE = "https://scopelink.invalid/problems/"


def message_errors(
    exc: ValidationError, whole: str = "message", limit: int = 10
) -> list[dict[str, str]]:
    """A message's validation errors as `{field, msg}`, the field without the tagged union's
    tag (the `type` that chose the model); an error of the whole model is named `whole`."""
    raw = exc.errors(include_url=False, include_context=False, include_input=False)
    return [
        {"field": ".".join(str(p) for p in e["loc"][1:]) or whole, "msg": e["msg"]}
        for e in raw[:limit]
    ]


def message_detail(exc: ValidationError, whole: str = "message") -> str:
    """The same errors in one line: `field: msg; field: msg`."""
    return "; ".join(f"{e['field']}: {e['msg']}" for e in message_errors(exc, whole))
