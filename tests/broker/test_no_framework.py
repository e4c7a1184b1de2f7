"""The broker's core and the grants carry no web framework, and SQLite needs no psycopg."""

from __future__ import annotations

import subprocess
import sys


def test_the_broker_core_loads_no_web_framework_nor_psycopg_on_sqlite() -> None:
    code = (
        "import sys\n"
        "import scopelink.grants, scopelink.broker.store, scopelink.broker.sqlite_store\n"
        "import scopelink.broker.accounts, scopelink.broker.pairing\n"
        "import scopelink.broker.telescopes, scopelink.broker.invitations\n"
        "roots = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(roots & {'fastapi', 'starlette', 'uvicorn', 'psycopg'}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('scopelink.simulator')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout
