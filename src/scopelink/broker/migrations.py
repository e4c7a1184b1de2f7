"""The broker's tables, as numbered migrations that SQLite and PostgreSQL both run unchanged.

Append a new tuple to change the schema; never edit one that has shipped. The common ground of
the two: TEXT, INTEGER and DOUBLE PRECISION columns (times are Unix seconds), secrets stored
only as hex SHA-256 digests, no booleans, no BLOBs.

Roles live in `members` alone: a telescope's `paired_by` records who paired it, not who owns it.
"""

from __future__ import annotations

__all__ = ["MIGRATIONS"]

_V1 = (
    """CREATE TABLE accounts (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL
    )""",
    # Names are ASCII (accounts.NAME_RULE), so lower() means the same in both databases.
    "CREATE UNIQUE INDEX accounts_name_nocase ON accounts (lower(name))",
    """CREATE TABLE api_tokens (
        digest TEXT PRIMARY KEY,
        account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        last_used DOUBLE PRECISION,
        expires DOUBLE PRECISION
    )""",
    "CREATE INDEX api_tokens_account ON api_tokens (account_id)",
    """CREATE TABLE telescopes (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        paired_by TEXT NOT NULL REFERENCES accounts (id),
        proxy_key TEXT NOT NULL UNIQUE,
        created DOUBLE PRECISION NOT NULL
    )""",
    """CREATE TABLE members (
        telescope_id TEXT NOT NULL REFERENCES telescopes (id) ON DELETE CASCADE,
        account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('owner', 'operator', 'viewer')),
        since DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (telescope_id, account_id)
    )""",
    "CREATE INDEX members_account ON members (account_id)",
    """CREATE TABLE invitations (
        digest TEXT PRIMARY KEY,
        telescope_id TEXT NOT NULL REFERENCES telescopes (id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('operator', 'viewer')),
        created_by TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        created DOUBLE PRECISION NOT NULL,
        expires DOUBLE PRECISION NOT NULL,
        used_by TEXT REFERENCES accounts (id) ON DELETE SET NULL,
        used_at DOUBLE PRECISION
    )""",
    """CREATE TABLE pairings (
        digest TEXT PRIMARY KEY,
        user_code TEXT NOT NULL UNIQUE,
        proxy_key TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL,
        expires DOUBLE PRECISION NOT NULL,
        telescope_id TEXT REFERENCES telescopes (id) ON DELETE CASCADE,
        attempts INTEGER NOT NULL DEFAULT 0
    )""",
    # The first half of a user code finds its pairing (pairing.py), so it is unique on its own.
    "CREATE UNIQUE INDEX pairings_lookup ON pairings (substr(user_code, 1, 4))",
    """CREATE TABLE claim_failures (
        account_id TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
        failures INTEGER NOT NULL,
        window_start DOUBLE PRECISION NOT NULL
    )""",
)

# Where each telescope's proxy link is held, and the browsers' conversations (presence.py).
_V2 = (
    """CREATE TABLE proxy_presence (
        telescope_id TEXT PRIMARY KEY REFERENCES telescopes (id) ON DELETE CASCADE,
        instance TEXT NOT NULL,
        linked_at DOUBLE PRECISION NOT NULL,
        seen DOUBLE PRECISION NOT NULL,
        max_peers INTEGER NOT NULL
    )""",
    "CREATE INDEX proxy_presence_instance ON proxy_presence (instance)",
    """CREATE TABLE connections (
        id TEXT PRIMARY KEY,
        telescope_id TEXT NOT NULL REFERENCES telescopes (id) ON DELETE CASCADE,
        account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
        instance TEXT NOT NULL,
        opened DOUBLE PRECISION NOT NULL,
        ended DOUBLE PRECISION,
        outcome TEXT
    )""",
    "CREATE INDEX connections_telescope ON connections (telescope_id, opened)",
)

# The proxy's own page on the telescope's network, for members on that network.
_V3 = ("ALTER TABLE proxy_presence ADD COLUMN lan_url TEXT",)

#: Migration n (1-based) is MIGRATIONS[n - 1]: the statements that take version n-1 to n.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
