"""`GET /api/catalog` answers, for the app (with alt/az at a telescope's site) and the broker
(which does not know where a telescope stands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scopelink.schema.rest import CatalogueEntry

if TYPE_CHECKING:
    from scopelink.catalog import Catalogue


def catalogue_entries(
    catalogue: Catalogue, query: str, limit: int, site: tuple[float, float] | None = None
) -> list[CatalogueEntry]:
    """The best `limit` matches of `query`; with `site` (latitude, east longitude in degrees),
    each with its altitude and azimuth there now."""
    entries = []
    for target in catalogue.search(query, limit=limit):
        entry = CatalogueEntry(
            id=target.id,
            name=target.name,
            common_name=target.common_name,
            kind=str(target.kind),
            ra_hours=target.ra_hours,
            dec_deg=target.dec_deg,
            magnitude=target.magnitude,
            constellation=target.constellation,
        )
        if site is not None:
            entry.alt_deg, entry.az_deg = catalogue.altaz(target, *site)
        entries.append(entry)
    return entries
