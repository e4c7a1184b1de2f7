"""Picture quality of a shown frame against its reference: luma, PSNR and SSIM.

Plain numpy and OpenCV, so the benchmark needs no image-quality library. Both measures work on
luma (BT.601 weights of the RGB the screen shows), the usual choice for codec comparisons: the eye
sees detail in brightness, and chroma is subsampled by both JPEG and H.264 anyway.

SSIM is Wang et al. (2004): 11×11 Gaussian windows of σ 1.5, K1 0.01, K2 0.03, L 255, averaged
over the windows that lie wholly inside the picture.
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


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} and {b.shape}")
