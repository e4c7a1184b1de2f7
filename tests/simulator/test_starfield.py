"""The synthetic sky: a stable catalogue, a believable camera, and frames fast enough to stream."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from scopelink import framestamp
from scopelink.simulator.scene import Scene, StackSnapshot
from scopelink.simulator.starfield import PIXEL_SCALE_ARCSEC, StarField

ORION = Scene(ra_hours=5.5, dec_deg=-5.0)


@pytest.fixture(scope="module")
def field() -> StarField:
    return StarField(seed=7)


def debayer(mosaic: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(mosaic, cv2.COLOR_BayerGRBG2RGB)


@pytest.fixture(scope="module")
def bright_star(field: StarField) -> tuple[Scene, float, float]:
    """A pointing with a mag < 8.5 star well inside the frame (below the stamp), and its pixel."""
    for ra_hours in np.arange(0.0, 24.0, 0.25):
        scene = Scene(ra_hours=float(ra_hours), dec_deg=-5.0)
        stars = field.stars_in_view(scene.ra_hours, scene.dec_deg).inside()
        ok = (stars.x > 100) & (stars.x < 980) & (stars.y > 250) & (stars.y < 1800)
        ok &= stars.mag < 8.5
        if ok.any():
            i = int(np.argmin(np.where(ok, stars.mag, np.inf)))
            return scene, float(stars.x[i]), float(stars.y[i])
    raise AssertionError("no bright star along the equator")


def starlight(mosaic: np.ndarray, x: float, y: float, r: int) -> tuple[np.ndarray, int, int]:
    """The light above the sky (and 3 sigma of its noise) in a box around (x, y)."""
    sky = mosaic[200:400].astype(np.float64)
    median = np.median(sky)
    noise = 1.4826 * np.median(np.abs(sky - median))
    x0, y0 = round(x) - r, round(y) - r
    patch = mosaic[y0 : y0 + 2 * r + 1, x0 : x0 + 2 * r + 1].astype(np.float64)
    return np.clip(patch - median - 3 * noise, 0, None), x0, y0


def centroid(mosaic: np.ndarray, x: float, y: float, r: int = 12) -> tuple[float, float]:
    light, x0, y0 = starlight(mosaic, x, y, r)
    ys, xs = np.mgrid[0 : 2 * r + 1, 0 : 2 * r + 1]
    total = light.sum()
    return x0 + (xs * light).sum() / total, y0 + (ys * light).sum() / total


def second_moments(mosaic: np.ndarray, x: float, y: float, r: int = 45) -> tuple[float, float]:
    light, _, _ = starlight(mosaic, x, y, r)
    ys, xs = np.mgrid[0 : 2 * r + 1, 0 : 2 * r + 1]
    total = light.sum()
    cx, cy = (xs * light).sum() / total, (ys * light).sum() / total
    return (
        float(np.sqrt(((xs - cx) ** 2 * light).sum() / total)),
        float(np.sqrt(((ys - cy) ** 2 * light).sum() / total)),
    )


def test_pixel_scale_matches_the_s50_optics() -> None:
    assert PIXEL_SCALE_ARCSEC == pytest.approx(2.39, abs=0.01)


@pytest.mark.parametrize(
    ("ra_hours", "dec_deg"),
    [(0.0, 0.0), (5.5, -5.0), (12.8, 27.1), (17.76, -29.0), (3.0, 89.9), (14.0, -89.5)],
)
def test_every_part_of_the_sky_shows_50_to_300_stars(
    field: StarField, ra_hours: float, dec_deg: float
) -> None:
    assert 50 <= len(field.stars_in_view(ra_hours, dec_deg).inside()) <= 300


def test_milky_way_is_denser_than_the_galactic_pole(field: StarField) -> None:
    plane = len(field.stars_in_view(17.76, -29.0).inside())  # galactic centre
    pole = len(field.stars_in_view(12.85, 27.1).inside())  # north galactic pole
    assert plane > 2 * pole


def test_catalogue_is_the_same_for_the_same_seed_and_differs_between_seeds() -> None:
    a = StarField(seed=1).stars_in_view(10.0, 20.0)
    b = StarField(seed=1).stars_in_view(10.0, 20.0)
    c = StarField(seed=2).stars_in_view(10.0, 20.0)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.mag, b.mag)
    assert len(a) != len(c) or not np.array_equal(a.x, c.x)


def test_faint_stars_outnumber_bright_ones(field: StarField) -> None:
    mags = np.concatenate([field.stars_in_view(h, 10.0).inside().mag for h in range(0, 24, 2)])
    assert (mags > 12).sum() > 5 * (mags < 10).sum() > 0


def test_mosaic_has_sensor_shape_and_is_deterministic(field: StarField) -> None:
    a = field.render_mosaic(ORION, 5, 1000)
    b = field.render_mosaic(ORION, 5, 1000)
    assert a.shape == (1920, 1080)
    assert a.dtype == np.uint16
    np.testing.assert_array_equal(a, b)
    c = field.render_mosaic(ORION, 6, 1000)
    assert not np.array_equal(a[200:], c[200:])


def test_stamp_is_drawn_into_the_mosaic(field: StarField) -> None:
    mosaic = field.render_mosaic(ORION, 42, 1_760_000_000_000)
    assert framestamp.read(debayer(mosaic)) == framestamp.FrameStamp(42, 1_760_000_000_000)


def test_stars_appear_where_the_catalogue_says(
    field: StarField, bright_star: tuple[Scene, float, float]
) -> None:
    scene, x, y = bright_star
    cx, cy = centroid(field.render_mosaic(scene, 1, 0), x, y)
    assert abs(cx - x) < 1.0
    assert abs(cy - y) < 1.0


def test_stars_move_when_the_mount_slews(
    field: StarField, bright_star: tuple[Scene, float, float]
) -> None:
    scene, x, y = bright_star
    moved = Scene(ra_hours=scene.ra_hours, dec_deg=scene.dec_deg + 0.05)
    mosaic = field.render_mosaic(moved, 1, 0)
    shift_px = 0.05 * 3600 / PIXEL_SCALE_ARCSEC  # ~75 px
    # Pointing further north moves the sky down the frame (north is up).
    cx, cy = centroid(mosaic, x, y + shift_px)
    assert abs(cx - x) < 1.0
    assert abs(cy - (y + shift_px)) < 1.0
    assert starlight(mosaic, x, y, 3)[0].sum() == 0  # nothing left where it was


def test_rotation_turns_the_field_about_its_centre(field: StarField) -> None:
    still = field.stars_in_view(ORION.ra_hours, ORION.dec_deg, 0.0)
    turned = field.stars_in_view(ORION.ra_hours, ORION.dec_deg, 90.0)
    cx, cy = (1080 - 1) / 2, (1920 - 1) / 2
    # A quarter turn maps (dx, dy) to (-dy, dx) or (dy, -dx); distances from the centre stay.
    r_still = np.hypot(still.x - cx, still.y - cy)
    r_turned = np.hypot(turned.x - cx, turned.y - cy)
    common = min(len(r_still), len(r_turned))
    assert common > 20
    shared = np.intersect1d(np.round(r_still, 6), np.round(r_turned, 6))
    assert len(shared) > 20


def test_defocus_widens_stars(field: StarField, bright_star: tuple[Scene, float, float]) -> None:
    scene, x, y = bright_star
    sharp = second_moments(field.render_mosaic(scene, 1, 0), x, y)
    blurred_scene = Scene(ra_hours=scene.ra_hours, dec_deg=scene.dec_deg, focus_offset=120)
    blurred = second_moments(field.render_mosaic(blurred_scene, 1, 0), x, y)
    assert blurred[0] > 2 * sharp[0]
    assert blurred[1] > 2 * sharp[1]


def test_stars_trail_while_the_mount_moves(
    field: StarField, bright_star: tuple[Scene, float, float]
) -> None:
    scene, x, y = bright_star
    moving = Scene(ra_hours=scene.ra_hours, dec_deg=scene.dec_deg, moving=True)
    sx, sy = second_moments(field.render_mosaic(moving, 1, 0), x, y)
    assert sy > 3 * sx


def test_longer_exposure_and_more_gain_brighten_the_sky(field: StarField) -> None:
    def sky(scene: Scene) -> float:
        return float(np.median(field.render_mosaic(scene, 1, 0)[200:]))

    base = sky(ORION)
    longer = sky(Scene(ORION.ra_hours, ORION.dec_deg, exposure_ms=2000))
    gained = sky(Scene(ORION.ra_hours, ORION.dec_deg, gain=200))
    assert longer > 2 * base - 1000
    assert gained > base * 1.5


def test_stack_noise_falls_with_the_number_of_frames(field: StarField) -> None:
    def noise(frames: int) -> float:
        rgb = field.render_stack_rgb(StackSnapshot(ORION.ra_hours, ORION.dec_deg, frames))
        sky = rgb[300:600, 300:600, 1].astype(np.float64)
        return float(np.median(np.abs(sky - np.median(sky))))

    assert noise(1) / noise(100) == pytest.approx(10, rel=0.25)


def test_stack_is_colour_with_stars_of_different_colours(field: StarField) -> None:
    rgb = field.render_stack_rgb(StackSnapshot(17.76, -29.0, 30))
    assert rgb.shape == (1920, 1080, 3)
    assert rgb.dtype == np.uint16
    stars = field.stars_in_view(17.76, -29.0).inside()
    inside = (stars.x > 5) & (stars.x < 1074) & (stars.y > 5) & (stars.y < 1914)
    unsaturated = (stars.mag > 10.5) & (stars.mag < 12.5) & inside
    sky = np.median(rgb[::8, ::8].reshape(-1, 3), axis=0).astype(np.float64)
    ratios = []
    for x, y in zip(stars.x[unsaturated], stars.y[unsaturated], strict=True):
        patch = rgb[round(y) - 3 : round(y) + 4, round(x) - 3 : round(x) + 4].astype(np.float64)
        light = (patch - sky).sum(axis=(0, 1))
        ratios.append(light[0] / light[2])
    assert len(ratios) > 5
    assert max(ratios) > 1.5 * min(ratios)
