"""Bandwidth at equal quality (bench/rate_quality.py): the curve is read where it should be."""

from __future__ import annotations

import math

import pytest
from bench.rate_quality import RatePoint, equal_quality

CURVE = [
    RatePoint("q90", 57_600, 39.0, 0.95),
    RatePoint("q10", 4_000, 30.0, 0.50),
    RatePoint("q40", 14_000, 33.0, 0.80),
]


def test_a_target_between_two_settings_is_interpolated_log_linearly_in_psnr() -> None:
    # 31.5 dB is halfway from q10 (30 dB) to q40 (33 dB): the geometric mean of their rates.
    found = equal_quality(CURVE, 31.5)
    assert found is not None and found.bracketed
    assert found.below == CURVE[1] and found.above == CURVE[2]
    assert found.kbps == pytest.approx(math.sqrt(4_000 * 14_000))
    assert found.ssim == pytest.approx(0.65)


def test_a_measured_setting_is_its_own_answer() -> None:
    found = equal_quality(CURVE, 33.0)
    assert found is not None
    assert found.kbps == pytest.approx(14_000)
    assert found.ssim == pytest.approx(0.80)


def test_a_target_under_the_cheapest_setting_is_only_bounded() -> None:
    found = equal_quality(CURVE, 28.0)
    assert found is not None and not found.bracketed
    assert found.kbps == 4_000 and found.above == CURVE[1]


def test_a_target_no_setting_reaches_has_no_answer() -> None:
    assert equal_quality(CURVE, 40.0) is None


def test_a_curve_that_turns_back_is_crossed_where_it_first_reaches_the_target() -> None:
    # Against a noise-free scene, a coarser JPEG can score higher: the cheapest crossing counts.
    bumpy = [
        RatePoint("a", 1_000, 31.0, 0.7),
        RatePoint("b", 2_000, 32.0, 0.7),
        RatePoint("c", 4_000, 30.0, 0.6),
        RatePoint("d", 8_000, 33.0, 0.8),
    ]
    found = equal_quality(bumpy, 31.5)
    assert found is not None and (found.below, found.above) == (bumpy[0], bumpy[1])
    assert found.kbps == pytest.approx(math.sqrt(1_000 * 2_000))


def test_settings_without_a_measurement_are_left_out() -> None:
    points = [*CURVE, RatePoint("lost", math.nan, math.nan, math.nan)]
    found = equal_quality(points, 31.5)
    assert found is not None and found.kbps == pytest.approx(math.sqrt(4_000 * 14_000))
