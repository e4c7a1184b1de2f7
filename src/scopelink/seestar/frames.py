"""Imaging payloads: decoding what arrives on 4800 into RGB arrays, and the inverse encoders.

Preview frames are one 16-bit little-endian GRBG Bayer plane (h x w), or RGB48 (h x w x 3).
Stacked frames are RGB48, raw or zipped in a `raw_data` member, or (firmware 8.46+) a finished
JPEG whose header carries width and height 0. The payload size decides first, then its magic.
Decoded arrays are read-only because one frame is shared by every consumer.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from scopelink.seestar.errors import ProtocolError
from scopelink.seestar.imaging_protocol import FrameHeader

#: The ZIP member holding the RGB48 pixels of a stacked image.
RAW_MEMBER = "raw_data"
_ZIP_MAGIC = b"PK\x03\x04"
_JPEG_MAGIC = b"\xff\xd8"
# OpenCV's short Bayer names (BayerGR...) are offset by one pixel; the four-letter alias names
# the top-left 2x2 block as it is, and tests check that lit red photosites decode as red.
_DEBAYER = cv2.COLOR_BayerGRBG2RGB
_LE16 = np.dtype("<u2")


class FrameKind(StrEnum):
    """What an imaging frame carries."""

    PREVIEW = "preview"
    STACK = "stack"
    ACK = "ack"


@dataclass(frozen=True, slots=True)
class ImagingFrame:
    """One decoded frame from the imaging channel."""

    header: FrameHeader
    kind: FrameKind
    #: (h, w, 3) RGB, uint16 (or uint8 for a JPEG stack); None for an acknowledgement.
    rgb: np.ndarray | None
    #: `time.monotonic()` when the last payload byte arrived.
    received: float
    #: Seconds from the header's arrival to the last payload byte.
    receive_s: float = 0.0
    #: Seconds spent decoding (and debayering) the payload.
    decode_s: float = 0.0


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _rgb48(payload: bytes, height: int, width: int) -> np.ndarray:
    return _frozen(np.frombuffer(payload, _LE16).reshape(height, width, 3))


def _debayer(payload: bytes, height: int, width: int) -> np.ndarray:
    mosaic = np.frombuffer(payload, _LE16).reshape(height, width)
    if not mosaic.dtype.isnative:  # big-endian host: OpenCV wants native byte order
        mosaic = mosaic.astype(np.uint16)
    return _frozen(cv2.cvtColor(mosaic, _DEBAYER))


def decode_preview(header: FrameHeader, payload: bytes) -> np.ndarray:
    """A preview payload (GRBG Bayer or RGB48) as a read-only (h, w, 3) uint16 RGB array."""
    height, width = header.height, header.width
    pixels = height * width
    if pixels > 0 and len(payload) == pixels * 2:
        return _debayer(payload, height, width)
    if pixels > 0 and len(payload) == pixels * 6:
        return _rgb48(payload, height, width)
    raise ProtocolError(
        f"preview payload of {len(payload)} bytes fits neither Bayer16 nor RGB48 "
        f"at {width}x{height}"
    )


def decode_stack(header: FrameHeader, payload: bytes) -> np.ndarray:
    """A stacked payload (raw RGB48, Bayer, ZIP or JPEG) as a read-only (h, w, 3) RGB array."""
    height, width = header.height, header.width
    pixels = height * width
    if pixels > 0 and len(payload) == pixels * 6:
        return _rgb48(payload, height, width)
    if pixels > 0 and len(payload) == pixels * 2:
        return _debayer(payload, height, width)
    if payload.startswith(_ZIP_MAGIC):
        return _rgb48(_unzip_raw(payload, pixels * 6), height, width)
    if payload.startswith(_JPEG_MAGIC):
        return _decode_jpeg(payload)
    raise ProtocolError(
        f"stacked payload of {len(payload)} bytes at {width}x{height} is neither raw RGB48, "
        f"Bayer, ZIP nor JPEG (starts {payload[:4].hex()})"
    )


def _unzip_raw(payload: bytes, expected: int) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            raw = archive.read(RAW_MEMBER)
    except KeyError:
        raise ProtocolError(f"stacked ZIP has no {RAW_MEMBER!r} member") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise ProtocolError(f"stacked ZIP is corrupt: {exc}") from exc
    if expected == 0 or len(raw) != expected:
        raise ProtocolError(f"{RAW_MEMBER} holds {len(raw)} bytes, expected {expected} for RGB48")
    return raw


def _decode_jpeg(payload: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ProtocolError("stacked JPEG could not be decoded")
    return _frozen(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


# -- encoders (the simulator's side) ----------------------------------------------------------


def encode_bayer(mosaic: np.ndarray) -> bytes:
    """A 2-D uint16 mosaic as little-endian preview payload bytes."""
    return np.ascontiguousarray(mosaic, dtype=_LE16).tobytes()


def encode_stack_raw(rgb16: np.ndarray) -> bytes:
    """An (h, w, 3) uint16 RGB image as raw little-endian RGB48 (firmware 7.75+)."""
    if rgb16.ndim != 3 or rgb16.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) image, got shape {rgb16.shape}")
    return np.ascontiguousarray(rgb16, dtype=_LE16).tobytes()


def encode_stack_zip(rgb16: np.ndarray, compresslevel: int = 1) -> bytes:
    """RGB48 zipped in a `raw_data` member (older firmware); level 1 keeps the simulator quick."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(
        buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=compresslevel
    ) as archive:
        archive.writestr(RAW_MEMBER, encode_stack_raw(rgb16))
    return buffer.getvalue()


def encode_stack_jpeg(rgb8: np.ndarray, quality: int = 90) -> bytes:
    """An (h, w, 3) uint8 RGB image as a JPEG (firmware 8.46+)."""
    if rgb8.dtype != np.uint8 or rgb8.ndim != 3 or rgb8.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) uint8 image, got {rgb8.dtype} {rgb8.shape}")
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()
