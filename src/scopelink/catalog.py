"""The built-in target catalogue: "goto by name", fully offline.

Owns the fixed objects (all 110 Messier objects, NGC/IC showpieces, bright named stars, read from
`data/catalog.csv`), the Sun, Moon and planets (computed with PyEphem's offline VSOP87/ELP
theories), name search and resolution, and the pointing helpers that go with them.

Every position is astrometric J2000: catalogue coordinates as published, and solar-system bodies
as PyEphem's astrometric geocentric place (topocentric when a `Site` is given). scopelink's mount
and `astro` treat RA/Dec of date as J2000 and model no precession; J2000 differs from the equator
of date by about 0.35° in 2025, a known simplification. `equatorial_of_date` precesses a target for
a telescope that wants coordinates of date.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from importlib import resources
from typing import NamedTuple

import ephem

from scopelink import astro

#: ephem.Date counts days from 1899-12-31 12:00 UT; the Unix epoch is this many days later.
_EPHEM_DAYS_AT_UNIX_EPOCH = 25567.5
_CSV_COLUMNS = (
    "id",
    "name",
    "common_name",
    "kind",
    "ra",
    "dec",
    "magnitude",
    "constellation",
    "aliases",
)
#: Spelled-out catalogue names a user may type, and the prefix our ids use.
_CATALOGUE_WORDS = {"messier": "m", "melotte": "mel", "collinder": "cr"}
_MAX_SUGGESTIONS = 5
#: How alike (difflib ratio) a misspelling must be to a name to be suggested for it.
_SUGGESTION_CUTOFF = 0.75


class Kind(StrEnum):
    """What sort of object a target is."""

    GALAXY = "galaxy"
    NEBULA = "nebula"
    PLANETARY_NEBULA = "planetary_nebula"
    OPEN_CLUSTER = "open_cluster"
    GLOBULAR_CLUSTER = "globular_cluster"
    STAR = "star"
    DOUBLE_STAR = "double_star"
    SUPERNOVA_REMNANT = "supernova_remnant"
    PLANET = "planet"
    MOON = "moon"
    SUN = "sun"
    OTHER = "other"


@dataclass(frozen=True)
class Target:
    """Something to point at: a stable id, names, and its J2000 position (at `when` if it moves)."""

    id: str
    name: str
    common_name: str | None
    kind: Kind
    ra_hours: float
    dec_deg: float
    magnitude: float | None
    constellation: str
    aliases: tuple[str, ...] = ()

    @property
    def moves(self) -> bool:
        """Whether the position depends on time (the Sun, the Moon and the planets)."""
        return self.kind in (Kind.SUN, Kind.MOON, Kind.PLANET)


class Site(NamedTuple):
    """Where the observer stands; it shifts the Moon by up to a degree (parallax)."""

    lat_deg: float
    lon_deg: float
    elevation_m: float = 0.0


class UnknownTargetError(LookupError):
    """No target, or more than one equally good one, answers to a name."""

    def __init__(self, name: str, suggestions: Iterable[str] = ()) -> None:
        self.name = name
        self.suggestions = tuple(suggestions)
        hint = f"; did you mean {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"no single target named {name!r}{hint}")


# --- Fixed objects ------------------------------------------------------------------------------


def load_fixed_targets(text: str | None = None) -> tuple[Target, ...]:
    """The fixed targets from catalogue CSV `text`, by default the packaged `data/catalog.csv`.

    Lines starting with `#` are comments; the first other line is the header.
    """
    if text is None:
        text = (resources.files("scopelink") / "data" / "catalog.csv").read_text("utf-8")
    lines = [line for line in io.StringIO(text) if not line.startswith("#")]
    reader = csv.DictReader(lines)
    if tuple(reader.fieldnames or ()) != _CSV_COLUMNS:
        raise ValueError(f"catalogue header is {reader.fieldnames}, expected {_CSV_COLUMNS}")
    targets = []
    for row in reader:
        try:
            targets.append(_target_from_row(row))
        except ValueError as exc:
            raise ValueError(f"catalogue row {row.get('id')!r}: {exc}") from exc
    return tuple(targets)


def _target_from_row(row: dict[str, str]) -> Target:
    magnitude = row["magnitude"].strip()
    aliases = tuple(alias.strip() for alias in row["aliases"].split(";") if alias.strip())
    return Target(
        id=row["id"],
        name=row["name"],
        common_name=row["common_name"] or None,
        kind=Kind(row["kind"]),
        ra_hours=_sexagesimal(row["ra"]),
        dec_deg=_sexagesimal(row["dec"]),
        magnitude=float(magnitude) if magnitude else None,
        constellation=row["constellation"],
        aliases=aliases,
    )


def _sexagesimal(text: str) -> float:
    """`"-05 23 28"` → -5.391…; the sign applies to the whole value, so `"-00 49 24"` works."""
    parts = text.split()
    if len(parts) != 3:
        raise ValueError(f"expected 'units minutes seconds', got {text!r}")
    units, minutes, seconds = (abs(float(part)) for part in parts)
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"minutes and seconds must be below 60 in {text!r}")
    value = units + minutes / 60.0 + seconds / 3600.0
    return -value if parts[0].startswith("-") else value


# --- The Sun, Moon and planets ------------------------------------------------------------------


class _Body(NamedTuple):
    id: str
    name: str
    kind: Kind
    make: Callable[[], ephem.Body]
    aliases: tuple[str, ...] = ()


_BODIES = (
    _Body("sun", "Sun", Kind.SUN, ephem.Sun, ("Sol",)),
    _Body("moon", "Moon", Kind.MOON, ephem.Moon, ("Luna",)),
    _Body("mercury", "Mercury", Kind.PLANET, ephem.Mercury),
    _Body("venus", "Venus", Kind.PLANET, ephem.Venus),
    _Body("mars", "Mars", Kind.PLANET, ephem.Mars),
    _Body("jupiter", "Jupiter", Kind.PLANET, ephem.Jupiter),
    _Body("saturn", "Saturn", Kind.PLANET, ephem.Saturn),
    _Body("uranus", "Uranus", Kind.PLANET, ephem.Uranus),
    _Body("neptune", "Neptune", Kind.PLANET, ephem.Neptune),
)


def _ephem_date(unix_s: float) -> ephem.Date:
    return ephem.Date(unix_s / astro.SECONDS_PER_DAY + _EPHEM_DAYS_AT_UNIX_EPOCH)


def _body_target(body: _Body, unix_s: float, site: Site | None) -> Target:
    """`body` at `unix_s`: astrometric J2000, geocentric or seen from `site`."""
    computed = body.make()
    date = _ephem_date(unix_s)
    if site is None:
        computed.compute(date)
        ra, dec = float(computed.a_ra), float(computed.a_dec)
    else:
        observer = ephem.Observer()
        observer.lat = math.radians(site.lat_deg)
        observer.lon = math.radians(site.lon_deg)
        observer.elevation = site.elevation_m
        observer.pressure = 0.0  # no refraction: it belongs to alt/az, not to RA/Dec
        observer.date = date
        computed.compute(observer)
        # ephem gives topocentric places only of date; carry their parallax over to J2000.
        d_ra = math.remainder(float(computed.ra) - float(computed.g_ra), math.tau)
        ra = float(computed.a_ra) + d_ra
        dec = float(computed.a_dec) + float(computed.dec) - float(computed.g_dec)
    return Target(
        id=body.id,
        name=body.name,
        common_name=None,
        kind=body.kind,
        ra_hours=astro.wrap_hours(math.degrees(ra) / 15.0),
        dec_deg=math.degrees(dec),
        magnitude=round(float(computed.mag), 2),
        constellation=constellation_at(math.degrees(ra) / 15.0, math.degrees(dec)),
        aliases=body.aliases,
    )


# --- Search -------------------------------------------------------------------------------------


def normalise(text: str) -> str:
    """A name reduced to what search compares: lower-case ASCII letters and digits only.

    "Messier 042", "M 42" and "m42" all become "m42"; "Cat's Eye" becomes "catseye".
    """
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    key = re.sub(r"[^a-z0-9]", "", folded.lower())
    for word, prefix in _CATALOGUE_WORDS.items():
        if key.startswith(word):
            key = prefix + key[len(word) :]
    # Leading zeros in a catalogue number: "ngc0253" is "ngc253".
    return re.sub(r"^([a-z]+)0+(?=\d)", r"\1", key)


class _Tier(IntEnum):
    """How well a query matches an entry; lower is better."""

    ID_OR_NAME = 0
    ALIAS = 1
    PREFIX = 2
    SUBSTRING = 3


@dataclass(frozen=True)
class _Entry:
    """One searchable thing: a fixed target, or a body whose position waits for a time."""

    order: int
    name: str
    primary_keys: tuple[str, ...]
    other_keys: tuple[str, ...]
    target: Target | None = None
    body: _Body | None = None

    def match(self, query: str) -> tuple[_Tier, int] | None:
        """(tier, letters the best key has beyond the query), or None if nothing matches."""
        if query in self.primary_keys:
            return (_Tier.ID_OR_NAME, 0)
        if query in self.other_keys:
            return (_Tier.ALIAS, 0)
        keys = self.primary_keys + self.other_keys
        prefixed = [len(key) - len(query) for key in keys if key.startswith(query)]
        if prefixed:
            return (_Tier.PREFIX, min(prefixed))
        contained = [len(key) - len(query) for key in keys if query in key]
        if contained:
            return (_Tier.SUBSTRING, min(contained))
        return None

    def at(self, unix_s: float, site: Site | None) -> Target:
        if self.target is not None:
            return self.target
        assert self.body is not None
        return _body_target(self.body, unix_s, site)


class Catalogue:
    """Targets by name: the fixed catalogue plus the Sun, Moon and planets at a given time."""

    def __init__(
        self,
        targets: Iterable[Target] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`targets` defaults to the packaged catalogue; `clock` gives "now" as Unix time."""
        self._fixed = tuple(load_fixed_targets() if targets is None else targets)
        self._clock = clock
        entries: list[_Entry] = []
        for target in self._fixed:
            primary = (normalise(target.id), normalise(target.name))
            others = tuple(normalise(a) for a in (target.common_name or "", *target.aliases))
            others = tuple(key for key in others if key)
            entries.append(_Entry(len(entries), target.name, primary, others, target=target))
        for body in _BODIES:
            others = tuple(normalise(alias) for alias in body.aliases)
            primary = (body.id, normalise(body.name))
            entries.append(_Entry(len(entries), body.name, primary, others, body=body))
        ids = [entry.primary_keys[0] for entry in entries]
        duplicates = sorted({key for key in ids if ids.count(key) > 1})
        if duplicates:
            raise ValueError(f"duplicate target ids: {', '.join(duplicates)}")
        self._entries = tuple(entries)

    @property
    def fixed(self) -> tuple[Target, ...]:
        """Every target whose position does not depend on time, in catalogue order."""
        return self._fixed

    def solar_system(self, when: float | None = None, *, site: Site | None = None) -> list[Target]:
        """The Sun, Moon and planets Mercury to Neptune at Unix time `when` (default now)."""
        unix_s = self._now(when)
        return [_body_target(body, unix_s, site) for body in _BODIES]

    def search(
        self, query: str, limit: int = 10, when: float | None = None, *, site: Site | None = None
    ) -> list[Target]:
        """Targets matching `query`, best first: exact id or name, exact common name or alias,
        then names starting with the query, then names containing it.

        Case, spaces and punctuation are ignored. Moving bodies are placed at `when`.
        """
        if limit <= 0:
            return []
        ranked = self._ranked(normalise(query))
        unix_s = self._now(when)
        return [entry.at(unix_s, site) for _, entry in ranked[:limit]]

    def resolve(self, name: str, when: float | None = None, *, site: Site | None = None) -> Target:
        """The one target `name` means, placed at `when`.

        An exact id or display name wins; otherwise a unique exact common name or alias, or
        failing that a unique prefix match. Anything else raises `UnknownTargetError` with up
        to five suggestions.
        """
        ranked = self._ranked(normalise(name))
        best_tier = ranked[0][0] if ranked else None
        best = [entry for tier, entry in ranked if tier == best_tier]
        if best_tier is not None and best_tier < _Tier.SUBSTRING and len(best) == 1:
            return best[0].at(self._now(when), site)
        raise UnknownTargetError(name, self._suggestions(normalise(name), ranked))

    def altaz(
        self, target: Target, lat_deg: float, lon_deg: float, when: float | None = None
    ) -> astro.Horizontal:
        """`altaz` below, with "now" taken from this catalogue's clock."""
        return altaz(target, lat_deg, lon_deg, self._now(when))

    def _ranked(self, query: str) -> list[tuple[_Tier, _Entry]]:
        """Every entry matching `query` with its tier, best first, ties in catalogue order."""
        if not query:
            return []
        scored = []
        for entry in self._entries:
            score = entry.match(query)
            if score is not None:
                scored.append((score, entry.order, entry))
        scored.sort(key=lambda item: (item[0], item[1]))
        return [(score[0], entry) for score, _, entry in scored]

    def _suggestions(self, query: str, ranked: list[tuple[_Tier, _Entry]]) -> list[str]:
        """Names to offer: the matches if there are any, else the closest spellings."""
        if ranked:
            return [entry.name for _, entry in ranked[:_MAX_SUGGESTIONS]]
        if not query:
            return []
        matcher = difflib.SequenceMatcher(b=query)
        likeness: dict[str, float] = {}
        for entry in self._entries:
            for key in entry.primary_keys + entry.other_keys:
                # Compare with the key's start too, so "andromida" finds "andromedagalaxy".
                score = 0.0
                for candidate in (key, key[: len(query)]):
                    matcher.set_seq1(candidate)
                    score = max(score, matcher.ratio())
                if score >= _SUGGESTION_CUTOFF:
                    likeness[entry.name] = max(score, likeness.get(entry.name, 0.0))
        return sorted(likeness, key=lambda name: -likeness[name])[:_MAX_SUGGESTIONS]

    def _now(self, when: float | None) -> float:
        return self._clock() if when is None else when


# --- Pointing helpers ---------------------------------------------------------------------------


def constellation_at(ra_hours: float, dec_deg: float) -> str:
    """IAU abbreviation of the constellation holding a J2000 position, e.g. "Ori"."""
    abbreviation = ephem.constellation((math.radians(ra_hours * 15.0), math.radians(dec_deg)))[0]
    # PyEphem splits Serpens into Caput (Se1) and Cauda (Se2); the IAU has one "Ser".
    return "Ser" if abbreviation in ("Se1", "Se2") else abbreviation


def altaz(
    target: Target, lat_deg: float, lon_deg: float, when: float | None = None
) -> astro.Horizontal:
    """Altitude and azimuth of `target` for an observer at (lat, east lon) at `when` (default now).

    Uses `astro`'s model (J2000 taken as of date, no refraction). Resolve a moving body at the
    same `when`, and with the observer's `Site` for the Moon, for a consistent answer.
    """
    unix_s = time.time() if when is None else when
    lst = astro.local_sidereal_hours(unix_s, lon_deg)
    return astro.equatorial_to_horizontal(target.ra_hours, target.dec_deg, lat_deg, lst)


def equatorial_of_date(target: Target, when: float | None = None) -> astro.Equatorial:
    """`target`'s J2000 position precessed to the mean equator and equinox of `when`."""
    unix_s = time.time() if when is None else when
    j2000 = ephem.Equatorial(
        math.radians(target.ra_hours * 15.0), math.radians(target.dec_deg), epoch=ephem.J2000
    )
    of_date = ephem.Equatorial(j2000, epoch=_ephem_date(unix_s))
    return astro.Equatorial(
        astro.wrap_hours(math.degrees(float(of_date.ra)) / 15.0), math.degrees(float(of_date.dec))
    )
