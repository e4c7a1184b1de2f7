"""The broker's core and the grants carry no web framework, and SQLite needs no psycopg."""

from __future__ import annotations

from tests.test_layers import modules_loaded_by, roots


def test_the_broker_core_loads_no_web_framework_nor_psycopg_on_sqlite() -> None:
    loaded = modules_loaded_by(
        "scopelink.grants",
        "scopelink.broker.store",
        "scopelink.broker.sqlite_store",
        "scopelink.broker.accounts",
        "scopelink.broker.pairing",
        "scopelink.broker.telescopes",
        "scopelink.broker.invitations",
    )
    assert sorted(roots(loaded) & {"fastapi", "starlette", "uvicorn", "psycopg"}) == []
    assert sorted(m for m in loaded if m.startswith("scopelink.simulator")) == []
