"""Decoding imaging payloads: Bayer previews, RGB48, zipped and JPEG stacks."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopelink import framestamp
from scopelink.seestar.errors import ProtocolError
from scopelink.seestar.frames import (
    decode_preview,
    decode_stack,
    encode_bayer,
    encode_stack_jpeg,
    encode_stack_raw,
    encode_stack_zip,
)
from scopelink.seestar.imaging_protocol import DataType, FrameHeader, ImageType


def preview_header(width: int, height: int, length: int) -> FrameHeader:
    return FrameHeader(
        length=length, frame_id=21, width=width, height=height,
        image_type=ImageType.PREVIEW, data_type=DataType.BAYER16,
    )  # fmt: skip


def stack_header(width: int, height: int, length: int) -> FrameHeader:
    return FrameHeader(
        length=length, frame_id=23, width=width, height=height,
        image_type=ImageType.STACK_RAW, data_type=DataType.RGB16,
    )  # fmt: skip


def grbg_mosaic(height: int, width: int, lit: str, level: int = 40000) -> np.ndarray:
    """A GRBG mosaic where only the photosites of one colour are lit."""
    mosaic = np.zeros((height, width), dtype=np.uint16)
    if lit == "red":
        mosaic[0::2, 1::2] = level
    elif lit == "blue":
        mosaic[1::2, 0::2] = level
    else:
        mosaic[0::2, 0::2] = level
        mosaic[1::2, 1::2] = level
    return mosaic


@pytest.mark.parametrize(("lit", "channel"), [("red", 0), ("green", 1), ("blue", 2)])
def test_grbg_photosites_decode_to_their_own_colour(lit: str, channel: int) -> None:
    mosaic = grbg_mosaic(16, 12, lit)
    payload = encode_bayer(mosaic)
    rgb = decode_preview(preview_header(12, 16, len(payload)), payload)
    assert rgb.shape == (16, 12, 3)
    assert rgb.dtype == np.uint16
    inner = rgb[2:-2, 2:-2].reshape(-1, 3)
    assert (inner[:, channel] == 40000).all()
    others = [c for c in range(3) if c != channel]
    assert (inner[:, others] == 0).all()


def test_preview_pixels_are_little_endian() -> None:
    mosaic = np.full((4, 4), 0x0102, dtype=np.uint16)
    payload = encode_bayer(mosaic)
    assert payload[:2] == b"\x02\x01"
    rgb = decode_preview(preview_header(4, 4, len(payload)), payload)
    assert (rgb == 0x0102).all()


def test_rgb48_preview_payload_is_accepted() -> None:
    image = np.arange(5 * 3 * 3, dtype=np.uint16).reshape(5, 3, 3)
    payload = encode_stack_raw(image)
    rgb = decode_preview(preview_header(3, 5, len(payload)), payload)
    np.testing.assert_array_equal(rgb, image)


def test_preview_of_the_wrong_size_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="fits neither"):
        decode_preview(preview_header(4, 4, 10), b"\0" * 10)


def test_decoded_frames_are_read_only_because_consumers_share_them() -> None:
    payload = encode_bayer(np.zeros((4, 4), dtype=np.uint16))
    rgb = decode_preview(preview_header(4, 4, len(payload)), payload)
    with pytest.raises(ValueError):
        rgb[0, 0, 0] = 1


def test_stamp_survives_debayer() -> None:
    rng = np.random.default_rng(3)
    mosaic = rng.integers(1000, 3000, size=(1920, 1080), dtype=np.uint16)
    stamp = framestamp.FrameStamp(frame=123456, emit_ms=1_760_000_000_123)
    framestamp.draw(mosaic, stamp)
    payload = encode_bayer(mosaic)
    rgb = decode_preview(preview_header(1080, 1920, len(payload)), payload)
    assert framestamp.read(rgb) == stamp


def test_raw_stack_round_trips() -> None:
    image = np.random.default_rng(1).integers(0, 65535, size=(6, 4, 3), dtype=np.uint16)
    payload = encode_stack_raw(image)
    assert len(payload) == 6 * 4 * 6
    np.testing.assert_array_equal(decode_stack(stack_header(4, 6, len(payload)), payload), image)


def test_zipped_stack_round_trips_through_raw_data_member() -> None:
    image = np.random.default_rng(2).integers(0, 65535, size=(8, 6, 3), dtype=np.uint16)
    payload = encode_stack_zip(image)
    assert zipfile.ZipFile(io.BytesIO(payload)).namelist() == ["raw_data"]
    np.testing.assert_array_equal(decode_stack(stack_header(6, 8, len(payload)), payload), image)


def test_jpeg_stack_carries_its_own_size() -> None:
    image = np.zeros((40, 24, 3), dtype=np.uint8)
    image[..., 0] = 200  # red
    image[..., 2] = 30
    payload = encode_stack_jpeg(image)
    header = FrameHeader(length=len(payload), frame_id=23, image_type=ImageType.STACK_JPEG)
    rgb = decode_stack(header, payload)
    assert rgb.shape == (40, 24, 3)
    assert rgb.dtype == np.uint8
    assert abs(int(rgb[..., 0].mean()) - 200) < 4
    assert abs(int(rgb[..., 2].mean()) - 30) < 4


def test_exact_size_decides_before_the_zip_magic() -> None:
    # A raw RGB48 payload whose first pixel happens to read "PK\x03\x04" is still raw.
    image = np.zeros((2, 2, 3), dtype=np.uint16)
    image[0, 0, 0] = 0x4B50  # b"PK" little-endian
    image[0, 0, 1] = 0x0403
    payload = encode_stack_raw(image)
    assert payload.startswith(b"PK\x03\x04")
    np.testing.assert_array_equal(decode_stack(stack_header(2, 2, len(payload)), payload), image)


def test_bayer_sized_stack_is_debayered() -> None:
    payload = encode_bayer(grbg_mosaic(8, 8, "red"))
    rgb = decode_stack(stack_header(8, 8, len(payload)), payload)
    assert rgb.shape == (8, 8, 3)
    assert rgb[4, 4, 0] == 40000


def test_zip_without_raw_data_is_a_protocol_error() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("other", b"x" * 100)
    payload = buffer.getvalue()
    with pytest.raises(ProtocolError, match="raw_data"):
        decode_stack(stack_header(4, 4, len(payload)), payload)


def test_zip_with_wrong_raw_data_size_is_a_protocol_error() -> None:
    payload = encode_stack_zip(np.zeros((3, 3, 3), dtype=np.uint16))
    with pytest.raises(ProtocolError, match="expected"):
        decode_stack(stack_header(4, 4, len(payload)), payload)


def test_truncated_zip_is_a_protocol_error() -> None:
    payload = encode_stack_zip(np.zeros((4, 4, 3), dtype=np.uint16))[:30]
    with pytest.raises(ProtocolError):
        decode_stack(stack_header(4, 4, len(payload)), payload)


def test_corrupt_jpeg_is_a_protocol_error() -> None:
    payload = b"\xff\xd8" + b"\x00" * 500
    header = FrameHeader(length=len(payload), frame_id=23, image_type=ImageType.STACK_JPEG)
    with pytest.raises(ProtocolError, match="JPEG"):
        decode_stack(header, payload)


def test_unknown_stack_payload_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="neither"):
        decode_stack(stack_header(4, 4, 7), b"garbage")


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    zipped=st.booleans(),
)
def test_any_rgb48_stack_round_trips(height: int, width: int, seed: int, zipped: bool) -> None:
    image = np.random.default_rng(seed).integers(0, 65536, (height, width, 3), dtype=np.uint16)
    payload = encode_stack_zip(image) if zipped else encode_stack_raw(image)
    header = stack_header(width, height, len(payload))
    np.testing.assert_array_equal(decode_stack(header, payload), image)
