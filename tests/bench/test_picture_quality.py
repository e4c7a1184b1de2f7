"""The benchmark's picture-quality maths (bench/picture_quality.py) against values known by hand."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from bench.picture_quality import (
    SSIM_SIGMA,
    SSIM_WINDOW,
    SceneMean,
    luma,
    noise_spectrum,
    psnr,
    rate_distortion_floor,
    ssim,
    star_mask,
)

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


def frames_of(scene: np.ndarray, count: int, sigma: float, seed: int) -> list[np.ndarray]:
    """`count` RGB frames of a grey `scene`, each with its own noise of `sigma`."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        grey = np.clip(np.rint(scene + rng.normal(0, sigma, scene.shape)), 0, 255)
        frames.append(np.repeat(grey[..., None], 3, axis=2).astype(np.uint8))
    return frames


def test_scene_mean_averages_the_per_frame_noise_away() -> None:
    scene = starfield(5)
    mean = SceneMean()
    for i, frame in enumerate(frames_of(scene, 64, 8.0, 6)):
        mean.add(frame, i % 2)
    assert mean.frames == 64 and mean.counts == [32, 32]
    # One frame is σ 8 from the scene; the mean of 64 about σ 1 (and rounding to uint8).
    assert psnr(scene, luma(frames_of(scene, 1, 8.0, 7)[0])) == pytest.approx(30.1, abs=0.2)
    residual = mean.mean() - scene
    assert float(np.sqrt(np.mean(residual**2))) == pytest.approx(1.0, abs=0.1)


def test_scene_mean_of_colour_frames_is_their_luma() -> None:
    rng = np.random.default_rng(8)
    frames = [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(3)]
    mean = SceneMean()
    for frame in frames:
        mean.add(frame, 0)
    expected = sum(luma(f) for f in frames) / 3
    assert mean.mean() == pytest.approx(expected, abs=1e-3)


def moved_stars(shape: tuple[int, int], dx: float, dy: float) -> np.ndarray:
    """A dark sky with a few hundred Gaussian stars, all moved by (dx, dy) pixels."""
    rng = np.random.default_rng(9)
    sky = np.full(shape, 40.0)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    for y, x in zip(rng.uniform(0, shape[0], 150), rng.uniform(0, shape[1], 150), strict=True):
        sky += 150 * np.exp(-((yy - y - dy) ** 2 + (xx - x - dx) ** 2) / (2 * 1.3**2))
    return sky


@pytest.mark.parametrize(("dx", "dy"), [(0.0, 0.0), (0.0, 0.4), (3.0, -1.0), (-12.0, 20.0)])
def test_scene_mean_measures_how_far_the_stars_moved_between_its_halves(
    dx: float, dy: float
) -> None:
    shape = (480, 270)
    mean = SceneMean()
    for half, (sx, sy) in enumerate(((0.0, 0.0), (dx, dy))):
        for frame in frames_of(moved_stars(shape, sx, sy), 8, 8.0, 10 + half):
            mean.add(frame, half)
    assert mean.shift_px(top=24) == pytest.approx(math.hypot(dx, dy), abs=0.1)


def test_scene_mean_needs_frames() -> None:
    with pytest.raises(ValueError, match="no frames"):
        SceneMean().mean()
    mean = SceneMean()
    mean.add(np.zeros((8, 8, 3), dtype=np.uint8), 0)
    with pytest.raises(ValueError, match="both halves"):
        mean.shift_px()


def test_star_mask_finds_the_stars_and_their_wings_but_not_the_sky() -> None:
    scene = np.full((64, 64), 40.0)
    scene[20, 30] = 200.0  # a star's core
    scene[20, 31] = 45.0  # its faint wing, under the threshold itself
    scene += np.random.default_rng(11).normal(0, 1.0, scene.shape)  # a mean's residual noise
    mask = star_mask(scene)
    assert mask[20, 30] and mask[20, 31] and mask[20, 32]
    assert mask.sum() == 17  # the core grown by 2 px: OpenCV's 5×5 ellipse has 17 pixels
    assert not mask[40:, :].any()


def test_white_gaussian_noise_needs_half_log2_of_variance_over_error_bits() -> None:
    """The textbook case: σ² / D = 4 needs ½·log2(4) = 1 bit a pixel; at D ≥ σ², nothing."""
    rng = np.random.default_rng(5)
    residuals = [rng.normal(0, 8, (256, 256)) for _ in range(4)]
    sky = np.ones((256, 256), dtype=bool)
    spectrum = noise_spectrum(residuals, sky)
    assert spectrum.mean() == pytest.approx(64, rel=0.02)  # its mean is the variance
    assert rate_distortion_floor(spectrum, 16.0) == pytest.approx(1.0, abs=0.03)
    assert rate_distortion_floor(spectrum, 64.0 * 1.05) == 0.0


def test_correlated_noise_of_the_same_variance_needs_fewer_bits() -> None:
    """White noise is the hardest Gaussian field of a given variance: a blurred one is partly
    predictable from its neighbours."""
    rng = np.random.default_rng(6)
    white = [rng.normal(0, 8, (256, 256)) for _ in range(4)]
    blurred = [cv2.GaussianBlur(w, (0, 0), 1.0) for w in white]
    blurred = [b * 8 / b.std() for b in blurred]  # the same variance again
    sky = np.ones((256, 256), dtype=bool)
    white_bits = rate_distortion_floor(noise_spectrum(white, sky), 16.0)
    blurred_bits = rate_distortion_floor(noise_spectrum(blurred, sky), 16.0)
    assert blurred_bits < 0.8 * white_bits


def test_the_spectrum_comes_from_sky_squares_only() -> None:
    rng = np.random.default_rng(7)
    residual = rng.normal(0, 8, (128, 128))
    residual[:, 64:] *= 10  # a star-filled half, far louder
    sky = np.zeros((128, 128), dtype=bool)
    sky[:, :64] = True
    assert noise_spectrum([residual], sky).mean() == pytest.approx(64, rel=0.1)
    with pytest.raises(ValueError):
        noise_spectrum([residual], np.zeros((128, 128), dtype=bool))
