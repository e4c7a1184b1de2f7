"""The test PostgreSQL server helper: missing binaries fail the run unless skipping is asked."""

from __future__ import annotations

import psycopg
import pytest

from tests.broker import postgres_server
from tests.broker.postgres_server import PostgresServer, postgres_or_fail


def test_missing_postgres_binaries_fail_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SCOPELINK_SKIP_POSTGRES", raising=False)
    monkeypatch.setattr(postgres_server, "find_postgres_bindir", lambda: None)
    with pytest.raises(pytest.fail.Exception, match="install Debian's `postgresql` package"):
        postgres_or_fail()


def test_postgres_tests_skip_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCOPELINK_SKIP_POSTGRES", "1")
    monkeypatch.setattr(postgres_server, "find_postgres_bindir", lambda: None)
    with pytest.raises(pytest.skip.Exception, match="SCOPELINK_SKIP_POSTGRES=1"):
        postgres_or_fail()


def test_the_server_listens_on_loopback_as_its_own_user(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as connection:
        settings = dict(
            connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'fsync', 'unix_socket_directories')"
            ).fetchall()
        )
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "fsync": "off",
        "unix_socket_directories": str(postgres_server.root),
    }
