"""The simulated sky and camera: a seeded star catalogue and the frames an S50 would take of it.

The catalogue covers the whole sphere in RA/Dec tiles (1° bands split into roughly square
tiles), each generated on first use from `(seed, band, tile)`, so any pointing always shows the
same stars. Counts follow a power law in magnitude down to 13.5 and rise toward the galactic
plane: 50-300 stars fall in the S50's 0.72° x 1.27° field.

Rendering is built for ≥ 30 frames/s on one core. Sky noise is never drawn per frame: a few
standard-normal planes are made once, scaled per gain/exposure into uint16 background planes,
and each frame copies a window at a random even offset (even keeps the Bayer phase). Stars are
drawn as small separable Gaussian patches (box-convolved along the sensor's long axis while the
mount moves), and star pixel positions are cached per pointing.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from scopelink import framestamp
from scopelink.settings import SENSOR_HEIGHT, SENSOR_WIDTH
from scopelink.simulator.scene import Scene, StackSnapshot

#: S50 optics: 250 mm focal length, 2.9 µm pixels.
FOCAL_LENGTH_MM = 250.0
PIXEL_UM = 2.9
PIXEL_SCALE_ARCSEC = 206.264806 * PIXEL_UM / FOCAL_LENGTH_MM

# Catalogue: log10 N(<m) grows by ALPHA per magnitude; density is for m <= MAG_LIMIT.
MAG_BRIGHT = -1.5
MAG_LIMIT = 13.5
ALPHA = 0.45
DENSITY_POLE = 65.0  # stars per square degree far from the Milky Way
DENSITY_PLANE_BOOST = 3.5  # extra factor in the galactic plane
PLANE_SCALE_DEG = 10.0
_NGP_RA = math.radians(192.85948)
_NGP_DEC = math.radians(27.12825)
TILE_DEG = 1.0
_TILE_CACHE = 512

# Camera model (ADU = analogue-digital units of the 16-bit output).
BIAS_ADU = 600.0
READ_NOISE_E = 3.0
SKY_E_PER_S = 600.0
STAR_E_PER_S_MAG0 = 1.9e8
#: ADU per electron at gain 0; gain is in 0.1 dB steps, as on ZWO sensors.
ADU_PER_E_GAIN0 = 0.4
#: GRBG photosite response to the sky: [[G, R], [B, G]].
SKY_BAYER = np.array([[1.0, 0.9], [0.75, 1.0]], dtype=np.float32)
SEEING_SIGMA_PX = 1.3
DEFOCUS_PX_PER_STEP = 0.04
TRACKING_JITTER_PX = 0.25
TRAIL_PX_PER_S = 120.0
#: Stacks are averages of 10 s sub-exposures at gain 80.
STACK_SUB_S = 10.0
STACK_GAIN = 80

_NOISE_PLANES = 3
_PAD = 32  # noise planes are this much larger on each side, for the random window offset
_VIEW_CACHE = 8
#: Farthest a star's light reaches from its centre (plus its trail), in pixels.
_MAX_REACH_PX = 96
_FULL = 65535.0


@dataclass(frozen=True, slots=True)
class ViewStars:
    """Catalogue stars near the field of one pointing, in sensor pixel coordinates."""

    x: np.ndarray
    y: np.ndarray
    mag: np.ndarray
    #: Colour index B-V: blue stars ~0, the Sun 0.65, red giants 1.5+.
    bv: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def inside(self) -> ViewStars:
        """Only the stars that fall on the sensor."""
        keep = (self.x >= 0) & (self.x < SENSOR_WIDTH) & (self.y >= 0) & (self.y < SENSOR_HEIGHT)
        return ViewStars(self.x[keep], self.y[keep], self.mag[keep], self.bv[keep])


@dataclass(frozen=True, slots=True)
class _Tile:
    ra: np.ndarray  # radians
    dec: np.ndarray  # radians
    mag: np.ndarray
    bv: np.ndarray


_ERF_COEFFS = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7); numpy has no erf and this is plenty.
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = np.zeros_like(t)
    for coeff in _ERF_COEFFS:
        poly = (poly + coeff) * t
    return np.sign(x) * (1.0 - poly * np.exp(-a * a))


def _colour(bv: np.ndarray) -> np.ndarray:
    """Relative R, G, B brightness of stars with colour index `bv`; shape (n, 3)."""
    t = np.clip((bv + 0.3) / 2.3, 0.0, 1.0)
    return np.stack([0.7 + 0.6 * t, np.ones_like(t), 1.3 - 0.9 * t], axis=1).astype(np.float32)


def _adu_per_e(gain: int) -> float:
    return ADU_PER_E_GAIN0 * 10.0 ** (gain / 200.0)


class StarField:
    """A deterministic sky for `seed`, and the S50 camera that images it."""

    def __init__(self, seed: int = 0, width: int = SENSOR_WIDTH, height: int = SENSOR_HEIGHT):
        self.seed = seed
        self.width = width
        self.height = height
        self._tiles: OrderedDict[tuple[int, int], _Tile] = OrderedDict()
        self._views: OrderedDict[tuple[float, float, float], ViewStars] = OrderedDict()
        self._unit_noise: list[np.ndarray] | None = None
        self._backgrounds: OrderedDict[tuple[int, float], list[np.ndarray]] = OrderedDict()
        self._stack_cache: tuple[StackSnapshot, np.ndarray] | None = None
        scale = math.radians(PIXEL_SCALE_ARCSEC / 3600.0)
        self._scale_rad = scale
        # Half-diagonal of the field plus room for trails and defocused halos.
        self._radius_deg = math.degrees(math.hypot(width, height) / 2 * scale) + 0.1

    # -- catalogue --------------------------------------------------------------------------------

    def _band_tiles(self, band: int) -> int:
        centre = math.radians(-90.0 + (band + 0.5) * TILE_DEG)
        return max(1, round(360.0 * math.cos(centre) / TILE_DEG))

    def _tile(self, band: int, index: int) -> _Tile:
        key = (band, index)
        tile = self._tiles.get(key)
        if tile is not None:
            self._tiles.move_to_end(key)
            return tile
        count = self._band_tiles(band)
        dec_lo = math.radians(-90.0 + band * TILE_DEG)
        dec_hi = math.radians(-90.0 + (band + 1) * TILE_DEG)
        ra_lo = 2 * math.pi * index / count
        ra_hi = 2 * math.pi * (index + 1) / count
        area_deg2 = math.degrees(ra_hi - ra_lo) * math.degrees(math.sin(dec_hi) - math.sin(dec_lo))
        sin_b = math.sin((dec_lo + dec_hi) / 2) * math.sin(_NGP_DEC) + math.cos(
            (dec_lo + dec_hi) / 2
        ) * math.cos(_NGP_DEC) * math.cos((ra_lo + ra_hi) / 2 - _NGP_RA)
        latitude = abs(math.degrees(math.asin(max(-1.0, min(1.0, sin_b)))))
        density = DENSITY_POLE * (1 + DENSITY_PLANE_BOOST * math.exp(-latitude / PLANE_SCALE_DEG))
        rng = np.random.default_rng([self.seed, band, index])
        n = int(rng.poisson(density * area_deg2))
        ra = rng.uniform(ra_lo, ra_hi, n)
        dec = np.arcsin(rng.uniform(math.sin(dec_lo), math.sin(dec_hi), n))
        floor = 10.0 ** (ALPHA * (MAG_BRIGHT - MAG_LIMIT))
        mag = MAG_LIMIT + np.log10(rng.uniform(floor, 1.0, n)) / ALPHA
        bv = np.clip(rng.normal(0.65, 0.35, n), -0.3, 2.0)
        tile = _Tile(ra, dec, mag, bv)
        self._tiles[key] = tile
        if len(self._tiles) > _TILE_CACHE:
            self._tiles.popitem(last=False)
        return tile

    def _tiles_near(self, ra_deg: float, dec_deg: float) -> list[_Tile]:
        r = self._radius_deg
        lo = max(0, math.floor((dec_deg - r + 90.0) / TILE_DEG))
        hi = min(round(180 / TILE_DEG) - 1, math.floor((dec_deg + r + 90.0) / TILE_DEG))
        polar = abs(dec_deg) + r >= 89.0
        tiles = []
        for band in range(lo, hi + 1):
            count = self._band_tiles(band)
            edge = max(abs(-90.0 + band * TILE_DEG), abs(-90.0 + (band + 1) * TILE_DEG))
            cos_edge = math.cos(math.radians(min(edge, abs(dec_deg) + r)))
            if polar or r / max(cos_edge, 1e-9) >= 180.0:
                indices = range(count)
            else:
                half = r / cos_edge
                width = 360.0 / count
                first = math.floor((ra_deg - half) / width)
                last = math.floor((ra_deg + half) / width)
                indices = sorted({i % count for i in range(first, last + 1)})
            tiles.extend(self._tile(band, i) for i in indices)
        return tiles

    def stars_in_view(
        self, ra_hours: float, dec_deg: float, rotation_deg: float = 0.0
    ) -> ViewStars:
        """Catalogue stars around a pointing, projected (gnomonic) onto the sensor, with margin."""
        key = (ra_hours, dec_deg, rotation_deg)
        view = self._views.get(key)
        if view is not None:
            self._views.move_to_end(key)
            return view
        ra_deg = (ra_hours * 15.0) % 360.0
        dec_deg = max(-90.0, min(90.0, dec_deg))
        tiles = self._tiles_near(ra_deg, dec_deg)
        ra = np.concatenate([t.ra for t in tiles])
        dec = np.concatenate([t.dec for t in tiles])
        a0, d0 = math.radians(ra_deg), math.radians(dec_deg)
        cos_d, sin_d = np.cos(dec), np.sin(dec)
        cos_da = np.cos(ra - a0)
        cos_c = math.sin(d0) * sin_d + math.cos(d0) * cos_d * cos_da
        front = cos_c > 0.5
        cos_c = np.where(front, cos_c, 1.0)
        xi = cos_d * np.sin(ra - a0) / cos_c
        eta = (math.cos(d0) * sin_d - math.sin(d0) * cos_d * cos_da) / cos_c
        theta = math.radians(rotation_deg)
        xi_r = xi * math.cos(theta) - eta * math.sin(theta)
        eta_r = xi * math.sin(theta) + eta * math.cos(theta)
        # North up and east left at rotation 0, as the sky looks from below.
        x = (self.width - 1) / 2 - xi_r / self._scale_rad
        y = (self.height - 1) / 2 - eta_r / self._scale_rad
        margin = _MAX_REACH_PX
        keep = (
            front
            & (x > -margin)
            & (x < self.width + margin)
            & (y > -margin)
            & (y < self.height + margin)
        )
        view = ViewStars(
            x=x[keep],
            y=y[keep],
            mag=np.concatenate([t.mag for t in tiles])[keep],
            bv=np.concatenate([t.bv for t in tiles])[keep],
        )
        self._views[key] = view
        if len(self._views) > _VIEW_CACHE:
            self._views.popitem(last=False)
        return view

    # -- noise ------------------------------------------------------------------------------------

    def _unit_planes(self) -> list[np.ndarray]:
        if self._unit_noise is None:
            rng = np.random.default_rng([self.seed, 0x5EED])
            shape = (self.height + 2 * _PAD, self.width + 2 * _PAD)
            self._unit_noise = [
                rng.standard_normal(shape, dtype=np.float32) for _ in range(_NOISE_PLANES)
            ]
        return self._unit_noise

    def _background_planes(self, gain: int, exposure_s: float) -> list[np.ndarray]:
        key = (gain, exposure_s)
        planes = self._backgrounds.get(key)
        if planes is not None:
            self._backgrounds.move_to_end(key)
            return planes
        adu = _adu_per_e(gain)
        sky_e = SKY_E_PER_S * exposure_s
        shape = (self.height + 2 * _PAD, self.width + 2 * _PAD)
        sky = np.tile(SKY_BAYER, (shape[0] // 2, shape[1] // 2)) * sky_e
        sigma = adu * np.sqrt(sky + READ_NOISE_E**2)
        mean = BIAS_ADU + adu * sky
        planes = [
            np.clip(mean + sigma * unit, 0, _FULL).astype(np.uint16) for unit in self._unit_planes()
        ]
        self._backgrounds[key] = planes
        if len(self._backgrounds) > 2:
            self._backgrounds.popitem(last=False)
        return planes

    # -- preview frames ---------------------------------------------------------------------------

    def render_mosaic(self, scene: Scene, frame_number: int, emit_ms: int) -> np.ndarray:
        """A (height, width) uint16 GRBG mosaic of `scene`, stamped with frame number and time."""
        mosaic = self.render_unstamped(scene, frame_number)
        framestamp.draw(mosaic, framestamp.FrameStamp(frame_number, emit_ms))
        return mosaic

    def render_unstamped(self, scene: Scene, frame_number: int) -> np.ndarray:
        """The mosaic without its stamp, for a caller that stamps at the moment it sends."""
        rng = np.random.default_rng([self.seed, frame_number & 0xFFFFFFFF, 1])
        exposure_s = max(scene.exposure_ms, 1.0) / 1000.0
        gain = int(scene.gain)
        planes = self._background_planes(gain, exposure_s)
        plane = planes[int(rng.integers(len(planes)))]
        dy, dx = (2 * rng.integers(0, _PAD + 1, size=2)).tolist()
        mosaic = plane[dy : dy + self.height, dx : dx + self.width].copy()

        adu = _adu_per_e(gain)
        stars = self.stars_in_view(scene.ra_hours, scene.dec_deg, scene.rotation_deg)
        if len(stars) == 0:
            return mosaic
        flux = adu * STAR_E_PER_S_MAG0 * exposure_s * 10.0 ** (-0.4 * stars.mag)
        colour = _colour(stars.bv)
        # Each star's response on the GRBG cell [[G, R], [B, G]], with the filters' efficiency.
        cells = np.empty((len(stars), 2, 2), dtype=np.float32)
        cells[:, 0, 0] = cells[:, 1, 1] = colour[:, 1]
        cells[:, 0, 1] = colour[:, 0] * SKY_BAYER[0, 1]
        cells[:, 1, 0] = colour[:, 2] * SKY_BAYER[1, 0]
        optics = _Optics(
            sigma=math.hypot(SEEING_SIGMA_PX, DEFOCUS_PX_PER_STEP * abs(scene.focus_offset)),
            trail=min(max(TRAIL_PX_PER_S * exposure_s, 8.0), 160.0) if scene.moving else 0.0,
            noise_adu=adu * math.sqrt(SKY_E_PER_S * exposure_s + READ_NOISE_E**2),
            adu_per_e=adu,
        )
        jitter = rng.normal(0.0, TRACKING_JITTER_PX, size=2)
        shifted = ViewStars(stars.x + jitter[0], stars.y + jitter[1], stars.mag, stars.bv)
        _draw_stars(mosaic, shifted, flux, optics, rng, cells)
        return mosaic

    # -- stacked images ---------------------------------------------------------------------------

    def render_stack_rgb(self, stack: StackSnapshot) -> np.ndarray:
        """The average of `stack.stacked_frames` 10 s subs: (height, width, 3) uint16 RGB."""
        if self._stack_cache is not None and self._stack_cache[0] == stack:
            return self._stack_cache[1]
        frames = max(1, stack.stacked_frames)
        adu = _adu_per_e(STACK_GAIN)
        sky_e = SKY_E_PER_S * STACK_SUB_S
        sigma = adu * math.sqrt(sky_e + READ_NOISE_E**2) / math.sqrt(frames)
        sky = BIAS_ADU + adu * sky_e * np.array([0.9, 1.0, 0.75], dtype=np.float32)
        window = (slice(_PAD, _PAD + self.height), slice(_PAD, _PAD + self.width))
        rgb = np.empty((self.height, self.width, 3), dtype=np.uint16)
        for channel, unit in enumerate(self._unit_planes()):
            rgb[..., channel] = np.clip(sky[channel] + sigma * unit[window], 0, _FULL)
        stars = self.stars_in_view(stack.ra_hours, stack.dec_deg)
        if len(stars):
            flux = adu * STAR_E_PER_S_MAG0 * STACK_SUB_S * 10.0 ** (-0.4 * stars.mag)
            colour = _colour(stars.bv)
            rng = np.random.default_rng([self.seed, stack.stacked_frames, 2])
            # Averaging n subs divides the photon noise of the star light by sqrt(n) too.
            optics = _Optics(SEEING_SIGMA_PX, 0.0, sigma, adu / frames)
            for channel in range(3):
                _draw_stars(rgb[..., channel], stars, flux * colour[:, channel], optics, rng)
        rgb.flags.writeable = False
        self._stack_cache = (stack, rgb)
        return rgb


def _profile(offsets: np.ndarray, sigma: float, trail: float) -> np.ndarray:
    """Star brightness along one axis at pixel offsets from its centre; integrates to ~1."""
    if trail <= 0:
        return np.exp(-0.5 * (offsets / sigma) ** 2) / (math.sqrt(2 * math.pi) * sigma)
    s = math.sqrt(2) * sigma
    return (_erf((offsets + trail / 2) / s) - _erf((offsets - trail / 2) / s)) / (2 * trail)


@dataclass(frozen=True, slots=True)
class _Optics:
    """How one exposure spreads star light: PSF width, trail length, noise, photon scale."""

    sigma: float
    trail: float
    noise_adu: float
    adu_per_e: float


def _draw_stars(
    image: np.ndarray,
    stars: ViewStars,
    flux: np.ndarray,
    optics: _Optics,
    rng: np.random.Generator,
    cells: np.ndarray | None = None,
) -> None:
    """Add star patches (separable Gaussian, trailed along y) to a 2-D uint16 image in place.

    `cells[i]` is star i's 2x2 photosite response for a Bayer mosaic, or None for one colour
    plane. Stars too faint to rise above the noise are skipped.
    """
    height, width = image.shape
    sigma, trail = optics.sigma, optics.trail
    x, y = stars.x, stars.y
    peak = flux / (2 * math.pi * sigma * sigma + 2.5 * sigma * trail)
    reach_px = _MAX_REACH_PX
    visible = (peak > 0.2 * optics.noise_adu) & (x > -reach_px) & (x < width + reach_px)
    visible &= (y > -reach_px) & (y < height + reach_px)
    candidates = np.nonzero(visible)[0]
    # Two patch sizes: faint stars vanish into the noise within ~3.5 sigma, bright ones need more.
    bright = peak[candidates] > 50 * optics.noise_adu
    for group, reach in ((candidates[~bright], 3.5), (candidates[bright], 6.0)):
        if len(group) == 0:
            continue
        rx = min(math.ceil(reach * sigma) + 1, reach_px)
        ry = min(math.ceil(reach * sigma + trail / 2) + 1, reach_px + math.ceil(trail / 2))
        cx = np.rint(x[group]).astype(np.int64)
        cy = np.rint(y[group]).astype(np.int64)
        ax = np.arange(-rx, rx + 1)
        ay = np.arange(-ry, ry + 1)
        gx = _profile((cx[:, None] + ax) - x[group][:, None], sigma, 0.0)
        gy = _profile((cy[:, None] + ay) - y[group][:, None], sigma, trail)
        patches = (flux[group, None, None] * gy[:, :, None] * gx[:, None, :]).astype(np.float32)
        if cells is not None:
            rows = (cy[:, None] + ay) & 1
            cols = (cx[:, None] + ax) & 1
            patches *= cells[group[:, None, None], rows[:, :, None], cols[:, None, :]]
        # Photon noise of the star light itself.
        patches += np.sqrt(patches * optics.adu_per_e) * rng.standard_normal(
            patches.shape, dtype=np.float32
        )
        for k in range(len(group)):
            x0, y0 = int(cx[k]) - rx, int(cy[k]) - ry
            x0c, y0c = max(x0, 0), max(y0, 0)
            x1c, y1c = min(x0 + 2 * rx + 1, width), min(y0 + 2 * ry + 1, height)
            if x0c >= x1c or y0c >= y1c:
                continue
            region = image[y0c:y1c, x0c:x1c]
            patch = patches[k, y0c - y0 : y1c - y0, x0c - x0 : x1c - x0]
            np.clip(region + patch, 0.0, _FULL, out=patch)
            region[...] = patch
