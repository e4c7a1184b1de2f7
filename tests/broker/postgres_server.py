"""A throwaway PostgreSQL server for tests, from the Debian `postgresql` package's binaries.

`PostgresServer.start()` runs `initdb` and `postgres` in a fresh temporary directory, listening
on 127.0.0.1 at a free port (and a Unix socket in that directory), with durability off for
speed; `create_database()` gives each test a database of its own; `stop()` shuts it down and
removes the directory. PostgreSQL refuses to run as root, so under root both run as the
`postgres` system user.

`postgres_or_fail()` is what a fixture calls: a clear test failure when the binaries are
missing, a skip only if SCOPELINK_SKIP_POSTGRES=1.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

__all__ = ["PostgresServer", "find_postgres_bindir", "postgres_or_fail"]

SKIP_VARIABLE = "SCOPELINK_SKIP_POSTGRES"
SYSTEM_USER = "postgres"
START_TIMEOUT_S = 30.0
_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",  # test data: losing it in a crash costs nothing
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


def find_postgres_bindir() -> Path | None:
    """The directory holding `initdb` and `postgres`: `pg_config --bindir`, else the newest
    /usr/lib/postgresql/<version>/bin."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=lambda p: _version(p.parent.name), reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


@dataclass
class PostgresServer:
    """A running test server; `dsn()` for a database on it."""

    bindir: Path
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    _names: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{SYSTEM_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new, empty database (named `test_<n>` unless `name`); its DSN."""
        name = name or f"test_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    @classmethod
    def start(cls, bindir: Path) -> PostgresServer:
        """initdb and start a server from `bindir`'s binaries; `RuntimeError` saying why not."""
        root = Path(tempfile.mkdtemp(prefix="scopelink-pg-"))
        as_user = _run_as()
        if as_user:
            os.chown(root, as_user.pw_uid, as_user.pw_gid)
        data = root / "data"
        initdb = subprocess.run(
            [
                *(str(bindir / "initdb"), "-D", str(data), "-U", SYSTEM_USER, "--auth=trust"),
                *("--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=root,
            **_user_kwargs(as_user),
        )
        if initdb.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
        failure = ""
        for _ in range(3):  # a free port can be taken between our probe and postgres binding it
            port = _free_port()
            settings = {**_SETTINGS, "unix_socket_directories": str(root)}
            command = [str(bindir / "postgres"), "-D", str(data), "-p", str(port)]
            command += [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
            with open(root / "postgres.log", "ab") as log:
                process = subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=root,
                    **_user_kwargs(as_user),
                )
            server = cls(bindir, root, port, process)
            failure = server._wait_ready()
            if not failure:
                return server
            server.stop(remove=False)
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(failure)

    def _wait_ready(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"postgres exited ({self.process.returncode}):\n{self._log_tail()}"
            try:
                psycopg.connect(self.dsn(), connect_timeout=2).close()
                return ""
            except psycopg.OperationalError:
                time.sleep(0.1)
        return f"postgres not ready after {START_TIMEOUT_S:.0f} s:\n{self._log_tail()}"

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def stop(self, *, remove: bool = True) -> None:
        """Fast shutdown (SIGINT: roll back, disconnect, stop), then remove the directory."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise RuntimeError(
            f"running as root, and there is no {SYSTEM_USER!r} system user to run PostgreSQL "
            "as (it refuses root); install Debian's postgresql package, which makes one"
        ) from None


def _user_kwargs(user: pwd.struct_passwd | None) -> dict[str, object]:
    if user is None:
        return {}
    env = {**os.environ, "HOME": str(user.pw_dir), "USER": user.pw_name, "LC_ALL": "C"}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [], "env": env}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_or_fail() -> PostgresServer:
    """A started server, or a test failure that says what is missing (a skip only when
    SCOPELINK_SKIP_POSTGRES=1)."""
    if os.environ.get(SKIP_VARIABLE) == "1":
        pytest.skip(f"PostgreSQL tests skipped: {SKIP_VARIABLE}=1")
    bindir = find_postgres_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, postgres) not found via `pg_config --bindir` "
            "or /usr/lib/postgresql/*/bin: install Debian's `postgresql` package "
            f"(apt-get install postgresql), or set {SKIP_VARIABLE}=1 to skip these tests",
            pytrace=False,
        )
    try:
        return PostgresServer.start(bindir)
    except RuntimeError as error:
        pytest.fail(f"could not start PostgreSQL from {bindir}: {error}", pytrace=False)
