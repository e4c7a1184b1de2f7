"""The benchmark's picture-quality maths (bench/picture_quality.py) against values known by hand."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from bench.picture_quality import SSIM_SIGMA, SSIM_WINDOW, luma, psnr, ssim

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def starfield(seed: int = 1, shape: tuple[int, int] = (240, 320)) -> np.ndarray:
    """A mid-grey picture with texture, far from 0 and 255 so nothing clips."""
    rng = np.random.default_rng(seed)
    smooth = cv2.GaussianBlur(rng.uniform(64, 192, shape), (0, 0), 2.0)
    return np.clip(smooth + rng.normal(0, 10, shape), 40, 215)


def test_luma_uses_bt601_weights() -> None:
    rgb = np.array([[[255, 255, 255], [0, 255, 0], [255, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    assert luma(rgb) == pytest.approx(np.array([[255.0, 149.685, 76.245, 29.07]]))


def test_identical_pictures_are_perfect() -> None:
    image = starfield()
    assert psnr(image, image.copy()) == math.inf
    assert ssim(image, image.copy()) == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_a_known_error() -> None:
    image = starfield()
    # Every pixel off by 4: MSE 16, PSNR 10·log10(255² / 16).
    assert psnr(image, image + 4) == pytest.approx(36.0896, abs=1e-4)
    # Gaussian noise of σ 8: PSNR 20·log10(255 / 8) ≈ 30.07 dB.
    noisy = image + np.random.default_rng(2).normal(0, 8, image.shape)
    assert psnr(image, noisy) == pytest.approx(20 * math.log10(255 / 8), abs=0.05)


def test_ssim_of_flat_pictures_is_the_luminance_term() -> None:
    x = np.full((64, 64), 100.0)
    y = np.full((64, 64), 110.0)
    # No variance: only (2·μx·μy + C1) / (μx² + μy² + C1) is left.
    assert ssim(x, y) == pytest.approx((2 * 100 * 110 + C1) / (100**2 + 110**2 + C1), rel=1e-9)


def test_ssim_matches_one_window_computed_by_hand() -> None:
    # An 11×11 picture has exactly one window wholly inside: the mean is that window's index.
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 255, (SSIM_WINDOW, SSIM_WINDOW))
    y = x + rng.normal(0, 20, x.shape)
    g = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA)
    w = g @ g.T
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
    cov = (w * x * y).sum() - mx * my
    expected = ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx**2 + my**2 + C1) * (vx + vy + C2))
    assert ssim(x, y) == pytest.approx(expected, rel=1e-9)


def test_more_noise_scores_worse_on_both_measures() -> None:
    image = starfield()
    rng = np.random.default_rng(4)
    light = image + rng.normal(0, 2, image.shape)
    heavy = image + rng.normal(0, 12, image.shape)
    assert psnr(image, light) > psnr(image, heavy)
    assert 1.0 > ssim(image, light) > ssim(image, heavy) > 0.0
    assert ssim(image, heavy) == pytest.approx(ssim(heavy, image), rel=1e-12)


def test_pictures_of_different_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        psnr(np.zeros((4, 4)), np.zeros((4, 5)))
