"""Picture quality of a shown frame against its reference: luma, PSNR and SSIM.

Plain numpy and OpenCV, so the benchmark needs no image-quality library. Both measures work on
luma (BT.601 weights of the RGB the screen shows), the usual choice for codec comparisons: the eye
sees detail in brightness, and chroma is subsampled by both JPEG and H.264 anyway.

SSIM is Wang et al. (2004): 11×11 Gaussian windows of σ 1.5, K1 0.01, K2 0.03, L 255, averaged
over the windows that lie wholly inside the picture.

`SceneMean` makes a second kind of reference: the per-pixel mean of many frames of a still scene,
which keeps the scene and averages its per-frame noise away. `star_mask` picks the pixels of such a
scene that are stars, so that PSNR can be taken on them alone.

`noise_spectrum` and `rate_distortion_floor` bound what any codec must spend to reproduce a
frame's noise: the rate-distortion function of a Gaussian field with the noise's power spectrum
(reverse water-filling, Cover & Thomas ch. 10).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

PEAK = 255.0
#: BT.601 luma weights of R, G, B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
#: A scene pixel this far above the sky's median (0..255 luma) is part of a star.
STAR_ABOVE_SKY = 10.0
#: Star cores are grown by this many pixels, to take in their fainter wings.
STAR_GROW_PX = 2
_C1 = (0.01 * PEAK) ** 2
_C2 = (0.03 * PEAK) ** 2


def luma(rgb: np.ndarray) -> np.ndarray:
    """Luma (float64, 0..255) of an (h, w, 3) RGB image."""
    r, g, b = LUMA_WEIGHTS
    pixels = rgb.astype(np.float64)
    return r * pixels[..., 0] + g * pixels[..., 1] + b * pixels[..., 2]


def psnr(reference: np.ndarray, shown: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two same-sized images; inf when they are equal."""
    _same_shape(reference, shown)
    mse = float(np.mean((reference.astype(np.float64) - shown.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(PEAK**2 / mse)


def ssim(reference: np.ndarray, shown: np.ndarray) -> float:
    """Mean structural similarity of two same-sized single-channel images (1.0 when equal)."""
    _same_shape(reference, shown)
    x = reference.astype(np.float64)
    y = shown.astype(np.float64)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / (
        (mu_x * mu_x + mu_y * mu_y + _C1) * (var_x + var_y + _C2)
    )
    # Windows reaching past the edge see reflected pixels, not the picture: leave them out.
    pad = SSIM_WINDOW // 2
    return float(index[pad:-pad, pad:-pad].mean())


def star_mask(scene: np.ndarray) -> np.ndarray:
    """Where a noise-free scene (luma) has stars: above the sky's median by `STAR_ABOVE_SKY`,
    grown by `STAR_GROW_PX`. Boolean, the scene's shape."""
    core = (scene > float(np.median(scene)) + STAR_ABOVE_SKY).astype(np.uint8)
    size = 2 * STAR_GROW_PX + 1
    grown = cv2.dilate(core, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return grown.astype(bool)


class SceneMean:
    """The per-pixel mean luma of the frames of a window: the scene without its per-frame noise.

    Memory stays bounded whatever the window's length: one running float32 sum per half of the
    window (8 MB each at 1080×1920). Two halves, so that `shift_px` can tell whether the scene
    stood still: averaging a drifting scene smears its stars.
    """

    def __init__(self) -> None:
        self._sums: list[np.ndarray | None] = [None, None]
        self.counts = [0, 0]

    @property
    def frames(self) -> int:
        return self.counts[0] + self.counts[1]

    def add(self, rgb: np.ndarray, half: int) -> None:
        """Add an (h, w, 3) RGB frame to the first (`half` 0) or second (1) half of the window."""
        # Luma is linear, so the mean's luma is the luma of the mean; float32 is exact enough
        # for a sum of a few thousand values below 256.
        y = cv2.transform(rgb.astype(np.float32), np.array([LUMA_WEIGHTS], dtype=np.float32))
        total = self._sums[half]
        if total is None:
            self._sums[half] = y
        else:
            _same_shape(total, y)
            total += y
        self.counts[half] += 1

    def mean(self) -> np.ndarray:
        """Mean luma (float32) over both halves."""
        first, second = self._sums
        if first is None or second is None:
            total = first if second is None else second
            if total is None:
                raise ValueError("no frames were added")
        else:
            total = first + second
        return total / self.frames

    def half_means(self) -> tuple[np.ndarray, np.ndarray]:
        first, second = self._sums
        if first is None or second is None:
            raise ValueError("both halves need frames")
        return first / self.counts[0], second / self.counts[1]

    def shift_px(self, top: int = 0) -> float:
        """How far the stars moved from the first half's mean to the second's, in pixels.

        The peak of the cross-correlation of the two means below row `top` (to leave a changing
        band out), refined to a fraction of a pixel by a parabola through it and its neighbours.
        Only what stands `STAR_ABOVE_SKY` above the sky takes part: the simulator's sky noise is a
        few fixed patterns at random offsets, and left in, two halves sharing one correlate at
        its offset rather than at the stars'.
        """
        first, second = (
            np.clip(m[top:] - (float(np.median(m[top:])) + STAR_ABOVE_SKY), 0.0, None).astype(
                np.float64
            )
            for m in self.half_means()
        )
        corr = np.fft.irfft2(np.fft.rfft2(first).conj() * np.fft.rfft2(second), s=first.shape)
        peak = np.unravel_index(int(np.argmax(corr)), corr.shape)
        offsets = []
        for axis, size in enumerate(corr.shape):
            at = list(peak)
            around = []
            for step in (-1, 0, 1):
                at[axis] = (peak[axis] + step) % size
                around.append(corr[tuple(at)])
            left, centre, right = around
            curvature = left - 2 * centre + right
            fraction = 0.5 * (left - right) / curvature if curvature < 0 else 0.0
            # Past half the size, the peak index is a negative shift wrapped around.
            whole = peak[axis] - size if peak[axis] > size // 2 else peak[axis]
            offsets.append(whole + fraction)
        return math.hypot(*offsets)


def noise_spectrum(residuals: list[np.ndarray], sky: np.ndarray, block: int = 32) -> np.ndarray:
    """The power spectrum of noise fields, per pixel (its mean is the noise's variance), from the
    `block`×`block` squares that lie wholly where `sky` is True in every one of `residuals`
    (same-sized float images of noise alone: a frame minus the scene)."""
    height, width = sky.shape
    squares = [
        (y, x)
        for y in range(0, height - block + 1, block)
        for x in range(0, width - block + 1, block)
        if sky[y : y + block, x : x + block].all()
    ]
    if not squares:
        raise ValueError(f"no {block}×{block} square lies wholly in the sky")
    total = np.zeros((block, block))
    for residual in residuals:
        _same_shape(residual, sky)
        for y, x in squares:
            total += np.abs(np.fft.fft2(residual[y : y + block, x : x + block])) ** 2
    return total / (len(squares) * len(residuals) * block * block)


def rate_distortion_floor(spectrum: np.ndarray, mse: float) -> float:
    """Bits per pixel a Gaussian field of power `spectrum` (per pixel, as `noise_spectrum` gives)
    needs at least to be reproduced with mean squared error `mse`: reverse water-filling, the
    water level θ set so that the error, the mean of min(θ, S(f)), is `mse`; then the rate is the
    mean of max(0, ½·log2(S(f)/θ)). Zero when `mse` is at least the variance (send nothing)."""
    power = spectrum.ravel().astype(np.float64)
    if mse <= 0:
        raise ValueError("a lossless copy of a continuous field has no finite rate")
    if mse >= power.mean():
        return 0.0
    low, high = 0.0, float(power.max())
    for _ in range(100):
        level = (low + high) / 2
        if np.minimum(level, power).mean() < mse:
            low = level
        else:
            high = level
    level = (low + high) / 2
    above = power > level
    return float(np.sum(0.5 * np.log2(power[above] / level)) / power.size)


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} and {b.shape}")
