"""The browser's generated protocol types match the pydantic models they come from."""

from __future__ import annotations

import json
import typing

from scopelink.schema import commands
from scopelink.schema.export import OUTPUT, SCHEMA_OUTPUT, render, render_json_schema, ts_type
from scopelink.schema.state import Problem


def test_committed_protocol_types_are_up_to_date() -> None:
    committed = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
    assert committed == render(), (
        "src/scopelink/ui/types/protocol.d.ts is stale: run `python -m scopelink.schema.export`"
    )


def test_committed_json_schema_is_up_to_date_and_has_every_channel_message() -> None:
    committed = SCHEMA_OUTPUT.read_text(encoding="utf-8") if SCHEMA_OUTPUT.exists() else ""
    assert committed == render_json_schema(), f"{SCHEMA_OUTPUT} is stale"
    defs = json.loads(committed)["$defs"]
    union = defs["ChannelServerMessage"]["oneOf"]
    kinds = {defs[ref["$ref"].rsplit("/", 1)[1]]["properties"]["type"]["const"] for ref in union}
    assert kinds == {
        "welcome", "ack", "result", "progress", "event", "telemetry", "lease", "pong",
        "answer", "error",
    }  # fmt: skip
    assert defs["CommandRequest"]["additionalProperties"] is False  # strict on what comes in


def test_every_command_is_in_the_command_union_with_a_required_tag() -> None:
    text = render()
    union = typing.get_args(typing.get_args(commands.Command)[0])
    line = next(x for x in text.splitlines() if x.startswith("export type Command ="))
    for model in union:
        tag = model.model_fields["type"].default
        assert f" {model.__name__}" in line
        assert f'  type: "{tag}";' in text, f"{model.__name__} needs a required type tag"


def test_sent_models_have_every_field_required_and_inputs_keep_defaults_optional() -> None:
    text = render()
    assert "  operation: Operation | null;" in text  # TelescopeState, as model_dump sends it
    assert "  speed?: number;" in text  # Move.speed has a default: a client may leave it out
    # Problem is sent with its empty fields left out (exclude_if): optional, never null.
    assert "  detail?: string;" in text
    problem = json.loads(Problem(title="t", status=500).model_dump_json())
    assert problem == {"type": "about:blank", "title": "t", "status": 500}


def test_signaling_messages_are_typed_both_ways() -> None:
    text = render()
    assert "export type SignalingClientMessage = SignalingOffer | SignalingCandidate" in text
    assert "export type SignalingServerMessage = SignalingHello | SignalingAnswer" in text
    assert '  tier?: "full" | "reduced" | null;' in text  # an input: may be left out
    assert "  reason: string | null;" in text  # sent: always there


def test_nested_unions_flatten_and_arrays_of_unions_keep_their_parentheses() -> None:
    nullable_int = {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert ts_type({"anyOf": [nullable_int, {"type": "string"}]}) == "number | string | null"
    array = {"type": "array", "items": {"anyOf": [{"const": "a"}, {"const": "b"}]}}
    assert ts_type({"anyOf": [array, {"type": "null"}]}) == '("a" | "b")[] | null'
    assert ts_type({"type": "array", "prefixItems": [{"type": "number"}] * 2}) == "[number, number]"
