"""Bandwidth at equal quality: where a transport's rate–quality curve reaches a given PSNR.

A transport measured at a few settings (MJPEG qualities, say) gives points of bandwidth and
quality. To ask what it would need to match another transport's quality, the points are joined
into a curve in order of bandwidth, and between two neighbours log(bandwidth) is taken as linear
in PSNR: each doubling of the rate buys a roughly constant number of dB, the usual assumption of
codec comparisons. SSIM is carried along the same segment, to show whether it agrees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RatePoint:
    """One measured setting: its bandwidth and its median quality."""

    label: str
    kbps: float
    psnr: float
    ssim: float


@dataclass(frozen=True, slots=True)
class EqualQuality:
    """Where a curve first reaches a target PSNR, and the measured settings either side."""

    #: Bandwidth at the target on the curve; an upper bound when `below` is None.
    kbps: float
    #: SSIM on the curve at that point.
    ssim: float
    #: The setting just short of the target; None when even the cheapest setting reaches it.
    below: RatePoint | None
    #: The cheapest setting at or above the target (the one after `below` in bandwidth).
    above: RatePoint

    @property
    def bracketed(self) -> bool:
        """True when the target lies between two measured settings, not beyond the cheapest."""
        return self.below is not None


def equal_quality(points: Iterable[RatePoint], target_psnr: float) -> EqualQuality | None:
    """The least bandwidth at which the curve through `points` reaches `target_psnr`.

    Points without a finite bandwidth and PSNR are left out. None when no point reaches the
    target. A curve that is not monotonic is crossed where it first reaches the target.
    """
    ordered = sorted(
        (p for p in points if math.isfinite(p.kbps) and p.kbps > 0 and math.isfinite(p.psnr)),
        key=lambda p: p.kbps,
    )
    for i, above in enumerate(ordered):
        if above.psnr < target_psnr:
            continue
        if i == 0:
            return EqualQuality(above.kbps, above.ssim, None, above)
        below = ordered[i - 1]
        f = (target_psnr - below.psnr) / (above.psnr - below.psnr)
        log_kbps = math.log(below.kbps) + f * (math.log(above.kbps) - math.log(below.kbps))
        ssim = below.ssim + f * (above.ssim - below.ssim)
        return EqualQuality(math.exp(log_kbps), ssim, below, above)
    return None
