"""The imaging channel's binary framing: an 80-byte big-endian header, then the payload.

Header fields (offsets in bytes): magic 0x03C3 @0, protocol version @2, header size @4 (80),
payload length @6 (u32), reserved @10, endianness flag @12, image type @13, data type @14,
frame id @15 (echoes the low byte of the request id), width @16, height @18, HFD x @20, HFD y @22,
HFD @24, can-debayer @26, image id @28 (a sequential counter); zeros up to the header size.
Older readings called byte 14 `code` and byte 15 `id`; the layout is the same.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

MAGIC = 0x03C3
HEADER_SIZE = 80
_STRUCT = struct.Struct(">HHHIHBBBBHHHHHHH")


class ImageType(IntEnum):
    """Byte 13 of the header."""

    ACK = 0
    PREVIEW = 1
    STACK_JPEG = 4
    STACK_RAW = 5


class DataType(IntEnum):
    """Byte 14 of the header."""

    NONE = 0
    BAYER16 = 2
    RGB16 = 3


class FrameId(IntEnum):
    """Well-known request ids, echoed in byte 15."""

    HANDSHAKE = 2
    VIEW = 20
    PREVIEW = 21
    STOP = 22
    STACK = 23
    CURRENT = 24


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """Every field of the 80-byte imaging header."""

    length: int
    frame_id: int
    width: int = 0
    height: int = 0
    image_type: int = ImageType.ACK
    data_type: int = DataType.NONE
    image_id: int = 0
    magic: int = MAGIC
    version: int = 2
    header_size: int = HEADER_SIZE
    reserved: int = 0
    endian: int = 0
    hfd_x: int = 0
    hfd_y: int = 0
    hfd: int = 0
    can_debayer: int = 0

    @classmethod
    def parse(cls, data: bytes) -> FrameHeader:
        """Parse the first bytes of a header (at least 30); the caller checks `magic`."""
        (
            magic,
            version,
            header_size,
            length,
            reserved,
            endian,
            image_type,
            data_type,
            frame_id,
            width,
            height,
            hfd_x,
            hfd_y,
            hfd,
            can_debayer,
            image_id,
        ) = _STRUCT.unpack_from(data)
        return cls(
            length=length, frame_id=frame_id, width=width, height=height,
            image_type=image_type, data_type=data_type, image_id=image_id, magic=magic,
            version=version, header_size=header_size, reserved=reserved, endian=endian,
            hfd_x=hfd_x, hfd_y=hfd_y, hfd=hfd, can_debayer=can_debayer,
        )  # fmt: skip

    def pack(self) -> bytes:
        head = _STRUCT.pack(
            self.magic, self.version, self.header_size, self.length, self.reserved, self.endian,
            self.image_type, self.data_type, self.frame_id & 0xFF, self.width, self.height,
            self.hfd_x, self.hfd_y, self.hfd, self.can_debayer, self.image_id & 0xFFFF,
        )  # fmt: skip
        return head + bytes(self.header_size - len(head))
