"""Goto by name through a broker: the broker's page searches the catalogue on the broker, which
has no telescope site and so gives no altitude; the proxy looks the chosen name up itself
(tests/e2e/test_broker_ui.py drives it from the page)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.remote.conftest import broker_settings, running_broker, sign_up


async def test_a_signed_in_account_finds_targets_by_name_without_altitudes(tmp_path: Path) -> None:
    async with running_broker(await broker_settings(tmp_path)) as broker:
        ada = await sign_up(broker, "ada")
        r = await ada.http.get("/api/catalog", params={"q": "Bode's galaxy", "limit": 3})
        assert r.status_code == 200, r.text
        first = r.json()[0]
        assert first["name"] == "M 81" and first["constellation"] == "UMa"
        assert first["alt_deg"] is None and first["az_deg"] is None

        for bad in ({"q": ""}, {"q": "M 81", "limit": 0}, {"q": "x" * 81}):
            r = await ada.http.get("/api/catalog", params=bad)
            assert r.status_code == 422, bad
            assert r.headers["content-type"].startswith("application/problem+json")

        async with httpx.AsyncClient(base_url=broker.url) as anonymous:
            r = await anonymous.get("/api/catalog", params={"q": "M 81"})
            assert r.status_code == 401
            assert "sign in" in r.json()["detail"]
