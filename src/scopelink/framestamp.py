"""The frame stamp: a frame number and emit time drawn into the picture itself.

The simulator draws it into every frame it emits, so any viewer downstream (MJPEG, WebRTC, a
benchmark) can read it back from the decoded picture to measure end-to-end latency and detect
dropped frames, whatever scaling, stretching and lossy coding happened in between.

Layout (documented in docs/frame-stamp.md): 96 cells in two rows of 48 along the top of the frame.
With `u = width / 50`, cell `k` of row `r` spans x in [(k+1)u, (k+2)u) and y in [(r+1)u, (r+2)u),
edges rounded down to even pixels so a Bayer mosaic debayers to a flat grey. A cell is white
(full scale) for a 1 bit and black (zero) for a 0 bit. Bits, most significant first:

    8 bits sync 0xB1 | 32 bits frame number | 48 bits emit time, ms since the Unix epoch |
    8 bits CRC-8 (poly 0x07, init 0) of the 11 bytes before it, sync byte included
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SYNC = 0xB1
CELLS_PER_ROW = 48
ROWS = 2
BITS = CELLS_PER_ROW * ROWS
UNITS = 50


@dataclass(frozen=True, slots=True)
class FrameStamp:
    """What a stamp carries."""

    frame: int
    emit_ms: int


def crc8(data: bytes) -> int:
    """CRC-8/SMBUS: polynomial 0x07, initial 0, not reflected, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _payload(stamp: FrameStamp) -> bytes:
    body = bytes([SYNC]) + (stamp.frame & 0xFFFFFFFF).to_bytes(4, "big")
    body += (stamp.emit_ms & 0xFFFFFFFFFFFF).to_bytes(6, "big")
    return body + bytes([crc8(body)])


def _cell_edges(width: int, even: bool) -> list[int]:
    u = width / UNITS
    edges = [int((i + 1) * u) for i in range(CELLS_PER_ROW + 1)]
    return [e & ~1 for e in edges] if even else edges


def draw(image: np.ndarray, stamp: FrameStamp) -> None:
    """Draw `stamp` in place into a 2-D mosaic or an (h, w, c) image of any integer dtype."""
    width = image.shape[1]
    full = np.iinfo(image.dtype).max if image.dtype.kind in "ui" else 1.0
    bits = int.from_bytes(_payload(stamp), "big")
    xs = _cell_edges(width, even=True)
    ys = _cell_edges(width, even=True)
    for i in range(BITS):
        row, col = divmod(i, CELLS_PER_ROW)
        bit = (bits >> (BITS - 1 - i)) & 1
        image[ys[row] : ys[row + 1], xs[col] : xs[col + 1]] = full if bit else 0


def read(image: np.ndarray) -> FrameStamp | None:
    """Read a stamp from a decoded picture (grey or colour, any size); None if absent or corrupt."""
    full = float(np.iinfo(image.dtype).max) if image.dtype.kind in "ui" else 1.0
    if image.ndim == 3:
        image = image.mean(axis=2)
    height, width = image.shape[:2]
    u = width / UNITS
    if u < 2 or height < 4 * u:
        return None
    half = max(1, int(u / 4))
    bits = 0
    for i in range(BITS):
        row, col = divmod(i, CELLS_PER_ROW)
        cx = int((col + 1.5) * u)
        cy = int((row + 1.5) * u)
        patch = image[cy - half : cy + half + 1, cx - half : cx + half + 1]
        bits = (bits << 1) | int(float(patch.mean()) > full / 2)
    raw = bits.to_bytes(BITS // 8, "big")
    if raw[0] != SYNC or crc8(raw[:-1]) != raw[-1]:
        return None
    frame = int.from_bytes(raw[1:5], "big")
    return FrameStamp(frame=frame, emit_ms=int.from_bytes(raw[5:11], "big"))
