"""The frame stamp survives what happens to a frame between the telescope and a viewer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from scopelink.framestamp import FrameStamp, draw, read

STAMP = FrameStamp(frame=123_456, emit_ms=1_795_000_000_123)


def _mosaic() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.normal(3000, 300, size=(1920, 1080)).clip(0, 65535).astype(np.uint16)


def _to_8bit_rgb(mosaic: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(mosaic, cv2.COLOR_BAYER_GR2RGB)
    return (rgb >> 8).astype(np.uint8)


def test_stamp_reads_back_from_the_raw_mosaic() -> None:
    mosaic = _mosaic()
    draw(mosaic, STAMP)
    assert read(mosaic) == STAMP


@pytest.mark.parametrize("width", [1080, 540, 270, 160])
@pytest.mark.parametrize("quality", [90, 40, 10])
def test_stamp_survives_debayer_scaling_and_jpeg(width: int, quality: int) -> None:
    mosaic = _mosaic()
    draw(mosaic, STAMP)
    small = cv2.resize(_to_8bit_rgb(mosaic), (width, width * 16 // 9), interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    assert read(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)) == STAMP


def test_a_picture_without_a_stamp_reads_as_none() -> None:
    assert read(_to_8bit_rgb(_mosaic())) is None


def test_a_corrupted_stamp_is_rejected() -> None:
    mosaic = _mosaic()
    draw(mosaic, STAMP)
    u = 1080 / 50
    x0, x1 = int(31 * u), int(32 * u)  # cell 30 of row 0: inside the frame-number field
    y0, y1 = int(u), int(2 * u)
    mosaic[y0:y1, x0:x1] = 65535 - mosaic[(y0 + y1) // 2, (x0 + x1) // 2]
    assert read(mosaic) is None


def test_frame_numbers_and_times_wrap_into_their_fields() -> None:
    mosaic = _mosaic()
    draw(mosaic, FrameStamp(frame=2**32 + 5, emit_ms=2**48 + 7))
    assert read(mosaic) == FrameStamp(frame=5, emit_ms=7)


def _crc8_as_documented(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _read_as_documented(image: np.ndarray) -> bytes | None:
    """docs/frame-stamp.md "Reading it", step by step, independent of framestamp.read."""
    width = image.shape[1]
    u = width / 50
    if u < 2 or image.shape[0] < 4 * u:
        return None
    grey = image.mean(axis=2) if image.ndim == 3 else image.astype(float)
    bits = 0
    for i in range(96):
        r, k = divmod(i, 48)
        cx, cy, h = int((k + 1.5) * u), int((r + 1.5) * u), max(1, int(u / 4))
        bits = bits << 1 | int(grey[cy - h : cy + h + 1, cx - h : cx + h + 1].mean() > 127.5)
    raw = bits.to_bytes(12, "big")
    ok = raw[0] == 0xB1 and _crc8_as_documented(raw[:11]) == raw[11]
    return raw if ok else None


def test_a_reader_written_from_the_doc_reads_the_documented_example() -> None:
    assert _crc8_as_documented(b"123456789") == 0xF4  # the check value the doc gives
    image = np.zeros((1920, 1080, 3), dtype=np.uint8)
    draw(image, FrameStamp(1234, 1_700_000_000_123))
    assert _read_as_documented(image) == bytes.fromhex("b1 00 00 04 d2 01 8b cf e5 68 7b 09")
    image[40:60, 300:400] ^= 0xFF  # flip cells: the documented CRC check must refuse it
    assert _read_as_documented(image) is None
