"""The display frame: one picture ready to show, shared read-only by every viewer, and the one
way a picture is scaled for a viewer (MJPEG widths, WebRTC tiers alike)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import cv2
import numpy as np

from scopelink import framestamp
from scopelink.framestamp import FrameStamp


class DisplayKind(enum.StrEnum):
    """Where a display frame's pixels came from."""

    #: A frame of the telescope's preview stream (imaging port), stretched.
    PREVIEW = "preview"
    #: A stacked image (imaging port), stretched.
    STACK = "stack"
    #: A frame decoded from the telescope's own video (RTSP): 8-bit already, not stretched.
    VIDEO = "video"


@dataclass(frozen=True, slots=True)
class StretchParams:
    """One linked screen stretch, in input values normalised to 0..1."""

    #: Median and MAD (scaled to sigma) of the subsample.
    median: float
    mad: float
    #: Input at or below this becomes black.
    black: float
    #: Midtones balance of the transfer function (0.5 is linear).
    midtone: float
    #: ADU taken off each channel first so the sky background is neutral grey (R, G, B).
    offsets: tuple[int, int, int] = (0, 0, 0)


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class DisplayFrame:
    """One frame ready to show: 8-bit RGB plus where it came from and what it cost."""

    #: (h, w, 3) uint8 RGB, read-only because every viewer shares it.
    rgb8: np.ndarray
    kind: DisplayKind
    #: The source's own frame counter (the imaging header's image id, or the video frame number).
    image_id: int
    #: The simulator's frame stamp, read from the source frame; None if it has none.
    stamp: FrameStamp | None
    #: `time.monotonic()` when the source frame's last byte arrived.
    received: float
    #: `time.monotonic()` when processing finished.
    processed: float
    #: Seconds spent making the frame (stretch or decode, and the stamp read) in a worker thread.
    process_s: float
    #: The stretch applied; None when the source was already 8-bit (a JPEG stack, video).
    stretch: StretchParams | None
    #: Presentation time on the 90 kHz video clock (`media.encoded`), when the source has its
    #: own: a decoded picture of the telescope's video carries its unit's, so the frames encoded
    #: from it and the unit passed through have the same. None: encoders use `received`.
    pts: int | None = None

    @property
    def width(self) -> int:
        return int(self.rgb8.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb8.shape[0])


def read_stamp(image: np.ndarray) -> FrameStamp | None:
    """The frame stamp of an image, reading only the band at the top where it is drawn."""
    width = image.shape[1]
    rows = math.ceil(4 * width / framestamp.UNITS) + 1
    return framestamp.read(image[:rows])


def scaled_size(width: int, height: int, to_width: int) -> tuple[int, int]:
    """(width, height) of a `width`×`height` picture at most `to_width` wide (never upscaled)."""
    if to_width >= width:
        return width, height
    return to_width, max(1, round(height * to_width / width))


def scale(rgb8: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`rgb8` resized to `size` (width, height); the same array if it already has that size."""
    if (rgb8.shape[1], rgb8.shape[0]) == size:
        return rgb8
    # INTER_AREA averages the pixels it drops: no aliasing of stars and noise.
    return cv2.resize(rgb8, size, interpolation=cv2.INTER_AREA)


def scale_to_width(rgb8: np.ndarray, width: int) -> np.ndarray:
    """`rgb8` at most `width` pixels wide (never upscaled), aspect ratio kept."""
    return scale(rgb8, scaled_size(rgb8.shape[1], rgb8.shape[0], width))
