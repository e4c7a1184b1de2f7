"""The pictures of the RTSP view stages: Moon, Sun, a planet, a daylight scene.

Each mode's picture is drawn once (a few hundred ms) into a canvas a little larger than the
frame; a frame is a window of it that drifts slowly (the object wanders in the field as an
alt-az mount tracks it), so motion is visible at little cost per frame. `rtsp_roi_index` is the
firmware's digital zoom: 1x, 2x or 4x of the centre, scaled back up to the frame size.

The wide-angle camera (S30) sees the same object far smaller, in a wider field.
Frames are 8-bit RGB; the caller draws the frame stamp and encodes.
"""

from __future__ import annotations

import math
import threading

import cv2
import numpy as np

#: View modes whose live view is RTSP video rather than 4800 preview frames.
RTSP_MODES = frozenset({"moon", "sun", "planet", "scenery", "solar_sys"})
#: `rtsp_roi_index` -> digital zoom factor.
ZOOMS = (1, 2, 4)
#: Drift of the object in the field, in frame pixels (amplitude) and seconds (period).
DRIFT_PX = 24
DRIFT_PERIOD_S = 12.0


def zoom_for(roi_index: int) -> int:
    return ZOOMS[roi_index] if 0 <= roi_index < len(ZOOMS) else 1


def _noise(rng: np.random.Generator, shape: tuple[int, int], octaves: int = 5) -> np.ndarray:
    """Smooth fractal noise in about [-1, 1]: random planes upscaled, finer ones weaker."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    cells = 4
    for _ in range(octaves):
        small = rng.standard_normal((cells, max(1, cells * w // h))).astype(np.float32)
        out += amp * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.55
        cells *= 2
    return out / total


def _disc_coords(shape: tuple[int, int], cx: float, cy: float, r: float) -> tuple[np.ndarray, ...]:
    """Normalised x, y on a disc of radius r and the sphere's z (0 outside the disc)."""
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    x = (x - cx) / r
    y = (y - cy) / r
    rr = x * x + y * y
    z = np.sqrt(np.clip(1.0 - rr, 0.0, 1.0))
    inside = np.clip((1.0 - np.sqrt(rr)) * r, 0.0, 1.0)  # one pixel of anti-aliasing
    return x, y, z, inside


def _moon(shape: tuple[int, int], radius: float, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    x, y, z, inside = _disc_coords(shape, w / 2, h / 2, radius)
    albedo = 0.62 + 0.12 * _noise(rng, shape, 6)
    maria = _noise(rng, shape, 3)
    albedo -= 0.22 * np.clip(maria * 2.5, 0.0, 1.0)
    # Craters: a dark floor and a bright rim, more small ones than big ones.
    crater = np.zeros(shape, np.float32)
    for _ in range(220):
        cr = radius * float(rng.power(0.25)) * 0.09 + 2.0
        cx, cy = (rng.uniform(-0.95, 0.95, 2) * radius) + (w / 2, h / 2)
        if math.hypot(cx - w / 2, cy - h / 2) > radius - cr:
            continue
        centre = (round(cx), round(cy))
        cv2.circle(crater, centre, round(cr), -0.18, -1, cv2.LINE_AA)
        cv2.circle(crater, centre, round(cr), 0.22, max(1, round(cr / 5)), cv2.LINE_AA)
    albedo += cv2.GaussianBlur(crater, (0, 0), 1.2)
    # A waxing gibbous phase: light from the right and a little behind, soft terminator.
    sun = np.array([0.8, -0.1, 0.59], np.float32)
    sun /= np.linalg.norm(sun)
    light = np.clip((x * sun[0] + y * sun[1] + z * sun[2]) * 6.0 + 0.2, 0.0, 1.0)
    value = np.clip(albedo, 0.0, 1.0) * light * inside
    grey = (value * 235.0).astype(np.float32)
    return np.dstack([grey, grey * 0.98, grey * 0.94])


def _sun(shape: tuple[int, int], radius: float, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    _, _, z, inside = _disc_coords(shape, w / 2, h / 2, radius)
    limb = 1.0 - 0.6 * (1.0 - z)  # linear limb darkening, u = 0.6
    granules = 1.0 + 0.05 * _noise(rng, shape, 7)
    spots = np.ones(shape, np.float32)
    for sx, sy, sr in ((-0.3, 0.15, 0.06), (0.35, -0.2, 0.035), (0.38, -0.12, 0.02)):
        centre = (round(w / 2 + sx * radius), round(h / 2 + sy * radius))
        cv2.circle(spots, centre, round(sr * radius * 1.8), 0.65, -1, cv2.LINE_AA)  # penumbra
        cv2.circle(spots, centre, round(sr * radius), 0.25, -1, cv2.LINE_AA)  # umbra
    spots = cv2.GaussianBlur(spots, (0, 0), 1.5)
    value = np.clip(limb * granules * spots, 0.0, 1.0) * inside
    return np.dstack([value * 255.0, value * 200.0, value * 120.0])


def _planet(shape: tuple[int, int], radius: float, rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    # Jupiter is flattened by about 6.5 %.
    _, y, z, inside = _disc_coords(
        (h, w), w / 2, h / 2, radius
    )  # fmt: skip
    ys = y / 0.935
    band = np.sin(ys * 9.0 + 0.6 * _noise(rng, shape, 3)) * 0.5 + 0.5
    cream = np.array([225.0, 205.0, 170.0], np.float32)
    brown = np.array([170.0, 120.0, 85.0], np.float32)
    colour = cream * (1 - band[..., None]) + brown * band[..., None]
    # The Great Red Spot.
    spot = np.zeros(shape, np.float32)
    cv2.ellipse(
        spot,
        (round(w / 2 + 0.3 * radius), round(h / 2 + 0.35 * radius)),
        (max(1, round(0.16 * radius)), max(1, round(0.09 * radius))),
        0, 0, 360, 1.0, -1, cv2.LINE_AA,
    )  # fmt: skip
    spot = cv2.GaussianBlur(spot, (0, 0), max(0.5, radius / 60))[..., None]
    colour = colour * (1 - spot) + np.array([200.0, 110.0, 80.0], np.float32) * spot
    shade = (0.45 + 0.55 * z)[..., None] * inside[..., None]
    picture = colour * shade
    # Four moons along the equator.
    for dx in (-4.2, -2.5, 3.1, 6.0):
        centre = (round(w / 2 + dx * radius), round(h / 2 + 0.02 * radius * dx))
        cv2.circle(picture, centre, max(1, round(radius / 25)), (230, 225, 215), -1, cv2.LINE_AA)
    return picture


def _scenery(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """A daylight landscape: sky, far hills, a field, trees and a house with windows."""
    h, w = shape
    rows = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    sky = np.dstack(
        [110 + 90 * rows, 160 + 70 * rows, 235 + 15 * rows]
    ) * np.ones((1, w, 1), np.float32)  # fmt: skip
    clouds = np.clip(_noise(rng, shape, 6) * 2.2 - 0.3, 0.0, 1.0)[..., None]
    picture = sky * (1 - clouds * 0.8) + 245.0 * clouds * 0.8
    horizon = h * 0.55
    xs = np.arange(w, dtype=np.float32)
    ridge = horizon - h * 0.12 * (0.5 + 0.5 * np.sin(xs / (w * 0.19 * scale) + 1.0))
    ridge -= h * 0.04 * np.sin(xs / (w * 0.043 * scale))
    yy = np.arange(h, dtype=np.float32)[:, None]
    hill = (yy > ridge[None, :])[..., None]
    texture = _noise(rng, shape, 7)[..., None]
    hills = np.array([95.0, 125.0, 150.0], np.float32) + 20 * texture
    picture = np.where(hill, hills, picture)
    field = (yy > horizon + 0.05 * h * np.sin(xs / (w * 0.3 * scale))[None, :])[..., None]
    grass = np.array([70.0, 140.0, 55.0], np.float32) + 35 * texture
    picture = np.where(field, grass, picture).astype(np.float32)
    # A house: wall, roof, windows.
    bw, bh = round(w * 0.12 / scale), round(h * 0.16 / scale)
    bx, by = round(w * 0.58), round(horizon + h * 0.08)
    cv2.rectangle(picture, (bx, by - bh), (bx + bw, by), (225, 215, 190), -1)
    roof = np.array([[bx - bw // 10, by - bh], [bx + bw // 2, by - bh - bh // 2],
                     [bx + bw + bw // 10, by - bh]], np.int32)  # fmt: skip
    cv2.fillPoly(picture, [roof], (160, 55, 40), cv2.LINE_AA)
    for i in range(4):
        for j in range(2):
            wx = bx + bw // 10 + i * bw // 4
            wy = by - bh + bh // 6 + j * bh // 2
            cv2.rectangle(picture, (wx, wy), (wx + bw // 7, wy + bh // 4), (60, 80, 110), -1)
    # Trees along the field's edge.
    for _ in range(int(40 * scale)):
        tx = int(rng.uniform(0, w))
        ty = int(horizon + rng.uniform(0.02, 0.3) * h)
        tr = max(2, round(rng.uniform(0.015, 0.04) * h / scale))
        cv2.rectangle(picture, (tx - tr // 6, ty), (tx + tr // 6, ty + tr * 2), (80, 55, 35), -1)
        cv2.circle(picture, (tx, ty), tr, (35, 95 + int(rng.uniform(0, 40)), 40), -1, cv2.LINE_AA)
    return picture


def _night(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A dark sky with a few faint stars: the background of the wide camera's night views."""
    picture = np.full((*shape, 3), 8.0, np.float32)
    h, w = shape
    for _ in range(60):
        x, y = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        level = float(rng.uniform(60, 200))
        cv2.circle(picture, (x, y), 1, (level, level, level), -1, cv2.LINE_AA)
    return picture


class VideoRenderer:
    """Draws the frames of one camera's RTSP video for a view mode; thread-safe."""

    def __init__(self, width: int, height: int, *, wide: bool = False, seed: int = 0) -> None:
        self.width = width
        self.height = height
        self.wide = wide
        self.seed = seed
        self._margin = DRIFT_PX + 2
        self._canvases: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def canvas(self, mode: str) -> np.ndarray:
        """The mode's picture, drawn on first use, with a margin for the drift."""
        key = "planet" if mode == "solar_sys" else mode
        with self._lock:
            canvas = self._canvases.get(key)
            if canvas is None:
                canvas = self._draw(key)
                self._canvases[key] = canvas
            return canvas

    def _draw(self, mode: str) -> np.ndarray:
        rng = np.random.default_rng(self.seed + 1)
        shape = (self.height + 2 * self._margin, self.width + 2 * self._margin)
        short = min(self.width, self.height)
        # The wide camera's focal length is some 25x shorter: the object is a few pixels across.
        shrink = 0.06 if self.wide else 1.0
        if mode == "scenery":
            picture = _scenery(shape, 2.5 if self.wide else 1.0, rng)
        elif mode == "moon":
            picture = _moon(shape, max(4.0, short * 0.36 * shrink), rng)
        elif mode == "sun":
            picture = _sun(shape, max(4.0, short * 0.36 * shrink), rng)
        else:
            picture = _planet(shape, max(3.0, short * 0.05 * shrink), rng)
        if self.wide and mode != "scenery":
            picture = np.maximum(picture, _night(shape, rng))
        return np.clip(picture, 0, 255).astype(np.uint8)

    def render(self, mode: str, t: float, roi_index: int = 0) -> np.ndarray:
        """The frame at time `t` (seconds): a drifting window of the canvas, zoomed; a new array."""
        canvas = self.canvas(mode)
        phase = 2 * math.pi * t / DRIFT_PERIOD_S
        m = self._margin
        x0 = m + round(DRIFT_PX * math.sin(phase))
        y0 = m + round(DRIFT_PX * 0.6 * math.sin(2 * phase + 0.7))
        zoom = zoom_for(roi_index)
        w, h = self.width // zoom, self.height // zoom
        x0 += (self.width - w) // 2
        y0 += (self.height - h) // 2
        window = canvas[y0 : y0 + h, x0 : x0 + w]
        if zoom == 1:
            return window.copy()
        return cv2.resize(window, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
