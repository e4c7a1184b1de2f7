"""The built-in target catalogue: names find the right objects, and positions are where they are."""

from __future__ import annotations

import calendar
import math

import ephem
import pytest

from scopelink import astro
from scopelink.catalog import (
    Catalogue,
    Kind,
    Site,
    Target,
    UnknownTargetError,
    altaz,
    constellation_at,
    equatorial_of_date,
    load_fixed_targets,
    normalise,
)

#: 2024-06-20 20:51 UTC, the June solstice.
JUNE_SOLSTICE_2024 = calendar.timegm((2024, 6, 20, 20, 51, 0))
#: 2024-03-20 03:06 UTC, the March equinox.
MARCH_EQUINOX_2024 = calendar.timegm((2024, 3, 20, 3, 6, 0))
SOLAR_SYSTEM_IDS = [
    "sun",
    "moon",
    "mercury",
    "venus",
    "mars",
    "jupiter",
    "saturn",
    "uranus",
    "neptune",
]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue(clock=lambda: JUNE_SOLSTICE_2024)


def ephem_date(unix_s: float) -> ephem.Date:
    return ephem.Date(unix_s / 86400.0 + 25567.5)


def separation_deg(a: Target, b: Target) -> float:
    return astro.equatorial_separation_deg(a.ra_hours, a.dec_deg, b.ra_hours, b.dec_deg)


def names(targets: list[Target]) -> list[str]:
    return [target.name for target in targets]


# --- The data -----------------------------------------------------------------------------------


def test_every_messier_object_is_present_once(catalogue: Catalogue) -> None:
    messier = [t for t in catalogue.fixed if t.id.startswith("m") and t.id[1:].isdigit()]
    assert sorted(int(t.id[1:]) for t in messier) == list(range(1, 111))
    assert all(t.name == f"M {t.id[1:]}" for t in messier)


def test_messier_objects_carry_their_ngc_or_ic_number(catalogue: Catalogue) -> None:
    without_ngc_or_ic = {"m40", "m45"}  # a double star and the Pleiades
    for target in catalogue.fixed:
        if target.id.startswith("m") and target.id[1:].isdigit():
            has_number = any(alias.startswith(("NGC ", "IC ")) for alias in target.aliases)
            assert has_number != (target.id in without_ngc_or_ic), target.id


def test_every_fixed_target_lies_in_the_constellation_it_names(catalogue: Catalogue) -> None:
    """PyEphem's IAU boundaries catch a mistyped coordinate anywhere in the catalogue."""
    wrong = []
    for target in catalogue.fixed:
        position = (math.radians(target.ra_hours * 15.0), math.radians(target.dec_deg))
        found = ephem.constellation(position)[0]
        found = "Ser" if found in ("Se1", "Se2") else found  # ephem splits Serpens in two
        if found != target.constellation:
            wrong.append((target.id, target.constellation, found))
    assert wrong == []


def test_fixed_positions_are_in_range(catalogue: Catalogue) -> None:
    for target in catalogue.fixed:
        assert 0.0 <= target.ra_hours < 24.0, target.id
        assert -90.0 <= target.dec_deg <= 90.0, target.id
        assert target.magnitude is None or -2.0 < target.magnitude < 15.0, target.id
        assert not target.moves


def test_showpieces_beyond_messier_are_included(catalogue: Catalogue) -> None:
    ids = {target.id for target in catalogue.fixed}
    wanted = {
        "ngc7000", "ngc869", "ngc884", "ngc253", "ngc5128", "ngc2237", "ic434", "ngc7293",
        "ngc6960", "ngc6992", "ngc891", "ngc4565", "ngc2392", "ngc3628", "ngc6543", "ngc4631",
        "ngc281", "ic1805", "ic1396", "ngc7635", "ngc2244",
    }  # fmt: skip
    assert wanted <= ids
    deep_sky = [t for t in catalogue.fixed if t.kind not in (Kind.STAR, Kind.DOUBLE_STAR)]
    assert len(deep_sky) - 110 >= 40


def test_bright_stars_agree_with_ephems_star_list(catalogue: Catalogue) -> None:
    stars = {t.name: t for t in catalogue.fixed if t.kind in (Kind.STAR, Kind.DOUBLE_STAR)}
    assert len(stars) >= 60
    for name in ("Sirius", "Vega", "Polaris", "Betelgeuse", "Rigel", "Arcturus", "Capella"):
        assert name in stars
    checked = 0
    for name, target in stars.items():
        try:
            reference = ephem.star(name)
        except KeyError:
            continue  # a few named stars (Mira, Eta Carinae) are not in ephem's list
        reference.compute(ephem_date(astro.J2000_UNIX))
        ra_hours = math.degrees(reference._ra) / 15.0
        dec_deg = math.degrees(reference._dec)
        error_deg = astro.equatorial_separation_deg(
            target.ra_hours, target.dec_deg, ra_hours, dec_deg
        )
        assert error_deg < 1.0 / 3600.0, name
        checked += 1
    assert checked >= 60


def test_ids_names_and_exact_names_are_unambiguous(catalogue: Catalogue) -> None:
    """Each id is its display name as a slug, and no alias or common name steals another's id."""
    ids = {normalise(target.id) for target in catalogue.fixed}
    assert len(ids) == len(catalogue.fixed)
    for target in catalogue.fixed:
        assert normalise(target.name) == normalise(target.id)
        assert target.id == target.id.lower() and " " not in target.id
        assert catalogue.resolve(target.id) == target
        assert catalogue.resolve(target.name) == target
        for other_name in (target.common_name or "", *target.aliases):
            assert normalise(other_name) not in ids - {normalise(target.id)}, other_name


def test_catalogue_data_errors_name_the_row() -> None:
    header = "id,name,common_name,kind,ra,dec,magnitude,constellation,aliases\n"
    good = "x1,X 1,,galaxy,01 02 03.5,-00 30 00,,And,\n"
    (target,) = load_fixed_targets("# a comment\n" + header + good)
    assert target.ra_hours == pytest.approx(1 + 2 / 60 + 3.5 / 3600)
    assert target.dec_deg == pytest.approx(-0.5)
    assert target.magnitude is None and target.aliases == ()
    with pytest.raises(ValueError, match="'x2'"):
        load_fixed_targets(header + "x2,X 2,,comet,01 02 03,+00 00 00,,And,\n")
    with pytest.raises(ValueError, match="'x3'"):
        load_fixed_targets(header + "x3,X 3,,galaxy,01 62 03,+00 00 00,,And,\n")
    with pytest.raises(ValueError, match="header"):
        load_fixed_targets("id,name\nx,X\n")


def test_duplicate_ids_are_refused() -> None:
    twin = Target("jupiter", "Jupiter", None, Kind.OTHER, 1.0, 2.0, None, "Psc")
    with pytest.raises(ValueError, match="jupiter"):
        Catalogue([twin])


# --- Search and resolve -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["m42", "M42", "M 42", "m 042", "Messier 42", "messier42", "ngc1976", "NGC 1976",
     "Orion Nebula", "orion neb", "ORION-NEBULA", "orion"],
)  # fmt: skip
def test_search_finds_the_orion_nebula_however_it_is_typed(
    catalogue: Catalogue, query: str
) -> None:
    assert catalogue.search(query)[0].id == "m42"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("andromeda", "m31"),
        ("Andromeda Galaxy", "m31"),
        ("pleiades", "m45"),
        ("seven sisters", "m45"),
        ("praesepe", "m44"),
        ("jupiter", "jupiter"),
        ("moon", "moon"),
        ("sirius", "sirius"),
        ("alpha lyrae", "vega"),
        ("cat's eye", "ngc6543"),
        ("horsehead", "ic434"),
        ("Barnard 33", "ic434"),
        ("NGC 0253", "ngc253"),
        ("Melotte 111", "mel111"),
        ("Rigil Kentaurus", "rigil-kentaurus"),
        ("Bodé’s  GALAXY", "m81"),
        ("winnecke-4", "m40"),
    ],
)
def test_search_ranks_the_intended_target_first(
    catalogue: Catalogue, query: str, expected: str
) -> None:
    assert catalogue.search(query)[0].id == expected


def test_exact_matches_rank_before_prefixes_before_substrings(catalogue: Catalogue) -> None:
    assert names(catalogue.search("m4", limit=11)) == ["M 4"] + [f"M {n}" for n in range(40, 50)]
    assert names(catalogue.search("m1", limit=11))[:2] == ["M 1", "M 10"]
    assert names(catalogue.search("jupiter")) == ["Jupiter", "NGC 3242"]  # Ghost of Jupiter
    andromeda = catalogue.search("andromeda")
    assert andromeda[0].id == "m31"
    assert {"Alpheratz", "Mirach", "Almach"} <= set(names(andromeda[1:]))


def test_search_respects_the_limit(catalogue: Catalogue) -> None:
    assert len(catalogue.search("n", limit=3)) == 3
    assert catalogue.search("m42", limit=0) == []
    assert catalogue.search("") == []
    assert catalogue.search("  -- ") == []


def test_search_places_moving_bodies_at_the_time_asked(catalogue: Catalogue) -> None:
    now = catalogue.search("moon")[0]
    later = catalogue.search("moon", when=JUNE_SOLSTICE_2024 + 6 * 3600)[0]
    assert now == catalogue.resolve("moon", when=JUNE_SOLSTICE_2024)
    assert 2.0 < separation_deg(now, later) < 5.0


def test_resolve_returns_the_single_best_match(catalogue: Catalogue) -> None:
    assert catalogue.resolve("M 31").id == "m31"
    assert catalogue.resolve("andromeda").id == "m31"  # the one name starting so
    assert catalogue.resolve("Whirlpool").id == "m51"
    assert catalogue.resolve("Saturn").kind is Kind.PLANET
    assert catalogue.resolve("Saturn Nebula").id == "ngc7009"


def test_resolve_refuses_an_ambiguous_name_and_offers_the_candidates(
    catalogue: Catalogue,
) -> None:
    with pytest.raises(UnknownTargetError) as caught:
        catalogue.resolve("Veil Nebula")
    assert set(caught.value.suggestions) == {"NGC 6960", "NGC 6992"}
    with pytest.raises(UnknownTargetError) as caught:
        catalogue.resolve("double cluster")
    assert caught.value.suggestions == ("NGC 869", "NGC 884")


@pytest.mark.parametrize(
    ("typo", "suggested"),
    [("betelguese", "Betelgeuse"), ("jupyter", "Jupiter"), ("andromida", "M 31"),
     ("sombrerro", "M 104"), ("pleyades", "M 45")],
)  # fmt: skip
def test_resolve_suggests_close_spellings(catalogue: Catalogue, typo: str, suggested: str) -> None:
    with pytest.raises(UnknownTargetError) as caught:
        catalogue.resolve(typo)
    error = caught.value
    assert error.name == typo
    assert suggested in error.suggestions
    assert len(error.suggestions) <= 5
    assert suggested in str(error)


def test_resolve_of_nonsense_has_no_suggestions_and_is_a_lookup_error(
    catalogue: Catalogue,
) -> None:
    with pytest.raises(LookupError) as caught:
        catalogue.resolve("xyzzy")
    assert isinstance(caught.value, UnknownTargetError)
    assert caught.value.suggestions == ()
    with pytest.raises(UnknownTargetError):
        catalogue.resolve("")


def test_suggestions_are_capped_at_five(catalogue: Catalogue) -> None:
    with pytest.raises(UnknownTargetError) as caught:
        catalogue.resolve("nebula")  # a substring of dozens of names
    assert len(caught.value.suggestions) == 5


# --- The Sun, Moon and planets ------------------------------------------------------------------


def test_solar_system_lists_the_sun_moon_and_eight_planets(catalogue: Catalogue) -> None:
    bodies = catalogue.solar_system(JUNE_SOLSTICE_2024)
    assert [body.id for body in bodies] == SOLAR_SYSTEM_IDS
    assert [body.kind for body in bodies[:2]] == [Kind.SUN, Kind.MOON]
    assert all(body.kind is Kind.PLANET and body.moves for body in bodies[2:])
    assert bodies[0].magnitude == pytest.approx(-26.7, abs=0.2)


@pytest.mark.parametrize("when", [JUNE_SOLSTICE_2024, MARCH_EQUINOX_2024, 1_893_456_000.0])
def test_solar_system_positions_match_ephem(catalogue: Catalogue, when: float) -> None:
    """Astrometric J2000 exactly as ephem has it, and within aberration and nutation (well under
    a minute of arc) of ephem's apparent place of date once precessed."""
    date = ephem_date(when)
    for target in catalogue.solar_system(when):
        body = getattr(ephem, target.name)()
        body.compute(date)
        assert target.ra_hours == pytest.approx(math.degrees(body.a_ra) / 15.0, abs=1e-9)
        assert target.dec_deg == pytest.approx(math.degrees(body.a_dec), abs=1e-9)
        of_date = equatorial_of_date(target, when)
        apparent_error = astro.equatorial_separation_deg(
            of_date.ra_hours,
            of_date.dec_deg,
            math.degrees(body.g_ra) / 15.0,
            math.degrees(body.g_dec),
        )
        assert apparent_error < 1.0 / 60.0, target.name
        assert target.constellation == constellation_at(target.ra_hours, target.dec_deg)


def test_the_sun_is_at_the_tropic_at_the_june_solstice(catalogue: Catalogue) -> None:
    sun = catalogue.resolve("sun", when=JUNE_SOLSTICE_2024)
    assert sun.dec_deg == pytest.approx(23.44, abs=0.05)
    assert sun.ra_hours == pytest.approx(6.0, abs=0.05)
    assert equatorial_of_date(sun, JUNE_SOLSTICE_2024).dec_deg == pytest.approx(23.44, abs=0.01)


def test_the_sun_is_on_the_equator_at_the_march_equinox(catalogue: Catalogue) -> None:
    sun = catalogue.resolve("sun", when=MARCH_EQUINOX_2024)
    of_date = equatorial_of_date(sun, MARCH_EQUINOX_2024)
    assert of_date.dec_deg == pytest.approx(0.0, abs=0.01)
    assert min(of_date.ra_hours, 24.0 - of_date.ra_hours) < 0.01
    # The J2000 equator is tilted from today's by precession: about 0.13° here.
    assert sun.dec_deg == pytest.approx(-0.134, abs=0.02)


def test_solar_system_bodies_move_at_their_own_pace(catalogue: Catalogue) -> None:
    day = 86400.0
    start = {t.id: t for t in catalogue.solar_system(JUNE_SOLSTICE_2024)}
    next_day = {t.id: t for t in catalogue.solar_system(JUNE_SOLSTICE_2024 + day)}
    next_month = {t.id: t for t in catalogue.solar_system(JUNE_SOLSTICE_2024 + 30 * day)}
    assert 0.9 < separation_deg(start["sun"], next_day["sun"]) < 1.1
    assert 10.0 < separation_deg(start["moon"], next_day["moon"]) < 16.0
    for body_id in SOLAR_SYSTEM_IDS:
        assert separation_deg(start[body_id], next_month[body_id]) > 0.01, body_id


def test_a_site_adds_the_moons_parallax(catalogue: Catalogue) -> None:
    site = Site(lat_deg=52.0, lon_deg=0.0, elevation_m=100.0)
    geocentric = catalogue.resolve("moon", when=JUNE_SOLSTICE_2024)
    topocentric = catalogue.resolve("moon", when=JUNE_SOLSTICE_2024, site=site)
    assert 0.1 < separation_deg(geocentric, topocentric) < 1.05  # at most the horizontal parallax
    observer = ephem.Observer()
    observer.lat, observer.lon = math.radians(52.0), 0.0
    observer.elevation, observer.pressure = 100.0, 0.0
    observer.date = ephem_date(JUNE_SOLSTICE_2024)
    moon = ephem.Moon(observer)
    of_date = equatorial_of_date(topocentric, JUNE_SOLSTICE_2024)
    error_deg = astro.equatorial_separation_deg(
        of_date.ra_hours, of_date.dec_deg, math.degrees(moon.ra) / 15.0, math.degrees(moon.dec)
    )
    assert error_deg < 1.0 / 60.0
    # A planet is too far away for the site to matter to a telescope.
    jupiter = catalogue.resolve("jupiter", when=JUNE_SOLSTICE_2024)
    jupiter_here = catalogue.resolve("jupiter", when=JUNE_SOLSTICE_2024, site=site)
    assert separation_deg(jupiter, jupiter_here) < 5.0 / 3600.0


def test_now_comes_from_the_catalogues_clock() -> None:
    clock_time = MARCH_EQUINOX_2024
    catalogue = Catalogue(clock=lambda: clock_time)
    assert catalogue.resolve("sun") == catalogue.resolve("sun", when=MARCH_EQUINOX_2024)
    assert catalogue.solar_system() == catalogue.solar_system(MARCH_EQUINOX_2024)


# --- Pointing helpers ---------------------------------------------------------------------------


@pytest.mark.parametrize("target_id", ["m42", "polaris", "ngc5128", "vega"])
def test_altaz_agrees_with_astro(catalogue: Catalogue, target_id: str) -> None:
    target = catalogue.resolve(target_id)
    lat, lon = 48.85, 2.35
    lst = astro.local_sidereal_hours(JUNE_SOLSTICE_2024, lon)
    expected = astro.equatorial_to_horizontal(target.ra_hours, target.dec_deg, lat, lst)
    assert altaz(target, lat, lon, JUNE_SOLSTICE_2024) == expected
    assert catalogue.altaz(target, lat, lon) == expected  # "now" from the catalogue's clock


def test_altaz_is_close_to_ephems_sky_despite_ignoring_precession(catalogue: Catalogue) -> None:
    """The J2000-as-of-date simplification costs a few tenths of a degree, no more."""
    lat, lon = 40.0, -105.0
    observer = ephem.Observer()
    observer.lat, observer.lon = math.radians(lat), math.radians(lon)
    observer.pressure = 0.0
    observer.date = ephem_date(JUNE_SOLSTICE_2024)
    for name in ("Vega", "Arcturus", "Antares", "Polaris"):
        star = ephem.star(name, observer)
        alt, az = altaz(catalogue.resolve(name), lat, lon, JUNE_SOLSTICE_2024)
        error_deg = astro.angular_separation_deg(
            az, alt, math.degrees(star.az), math.degrees(star.alt)
        )
        assert error_deg < 0.5, name


def test_altaz_puts_polaris_at_the_observers_latitude_in_the_north(catalogue: Catalogue) -> None:
    polaris = catalogue.resolve("polaris")
    for when in (JUNE_SOLSTICE_2024, MARCH_EQUINOX_2024):
        alt, az = altaz(polaris, 45.0, 10.0, when)
        assert alt == pytest.approx(45.0, abs=1.0)
        assert astro.wrap_deg_signed(az) == pytest.approx(0.0, abs=1.5)


def test_equatorial_of_date_is_identity_at_j2000_and_drifts_after(catalogue: Catalogue) -> None:
    regulus = catalogue.resolve("regulus")  # on the ecliptic, so it drifts the full rate
    at_epoch = equatorial_of_date(regulus, astro.J2000_UNIX)
    assert at_epoch.ra_hours == pytest.approx(regulus.ra_hours, abs=1e-6)
    assert at_epoch.dec_deg == pytest.approx(regulus.dec_deg, abs=1e-5)
    drift = astro.equatorial_separation_deg(
        regulus.ra_hours, regulus.dec_deg, *equatorial_of_date(regulus, JUNE_SOLSTICE_2024)
    )
    assert drift == pytest.approx(50.3 * 24.47 / 3600.0, rel=0.05)  # 50.3" a year
