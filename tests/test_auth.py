"""Identities and roles, as every entry point uses them (`scopelink.auth`)."""

from __future__ import annotations

from scopelink.auth import Caller, Role, TokenBook, may_command


def test_without_tokens_every_caller_is_an_operator_named_by_its_address() -> None:
    book = TokenBook({})
    assert not book.required
    assert book.caller(None, "192.0.2.7") == Caller(Role.OPERATOR, "192.0.2.7")
    assert book.caller("anything", "192.0.2.7") == Caller(Role.OPERATOR, "192.0.2.7")


def test_a_token_names_its_role_and_never_appears_in_the_client_id() -> None:
    book = TokenBook({"op-s3cret": "operator", "eye-s3cret": "viewer"})
    assert book.required
    operator = book.caller("op-s3cret", "192.0.2.7")
    viewer = book.caller("eye-s3cret", "192.0.2.8")
    assert operator is not None and operator.role is Role.OPERATOR
    assert viewer is not None and viewer.role is Role.VIEWER
    assert "s3cret" not in operator.client and "s3cret" not in viewer.client
    assert operator.client.startswith("token-") and operator.client != viewer.client
    # The same token from another address is the same client (its id follows the token).
    assert book.caller("op-s3cret", "198.51.100.1") == operator
    assert book.caller("wrong", "192.0.2.7") is None
    assert book.caller(None, "192.0.2.7") is None


def test_viewers_watch_operators_command_and_owners_change_their_own() -> None:
    viewer = Caller(Role.VIEWER, "tab-a")
    operator = Caller(Role.OPERATOR, "tab-b")
    assert not viewer.may_command and operator.may_command
    assert may_command(Role.OPERATOR) and not may_command(Role.VIEWER)
    assert viewer.may_change("tab-a") and not viewer.may_change("tab-b")
    assert operator.may_change("tab-a")
