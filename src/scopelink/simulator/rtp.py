"""RTP and RTCP packets the simulated camera sends (RFC 3550): data, sender reports, BYE."""

from __future__ import annotations

import struct

#: The dynamic payload type the SDP maps to H264/90000.
PAYLOAD_TYPE = 96
#: Seconds between the NTP epoch (1900) and the Unix epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800
_RTCP_SR = 200
_RTCP_SDES = 202
_RTCP_BYE = 203


def rtp_header(seq: int, timestamp: int, ssrc: int, marker: bool) -> bytes:
    """The 12-byte fixed header: version 2, no padding, extension or CSRCs."""
    return struct.pack(
        "!BBHII",
        0x80,
        (0x80 if marker else 0) | PAYLOAD_TYPE,
        seq & 0xFFFF,
        timestamp & 0xFFFFFFFF,
        ssrc,
    )


def _sdes_cname(ssrc: int, cname: str) -> bytes:
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\x00"
    chunk += b"\x00" * (-len(chunk) % 4)
    return struct.pack("!BBH", 0x81, _RTCP_SDES, (4 + len(chunk)) // 4 - 1) + chunk


def sender_report(
    ssrc: int, wall_s: float, timestamp: int, packets: int, octets: int, cname: str
) -> bytes:
    """A compound RTCP packet: SR (no report blocks) and SDES CNAME, as RFC 3550 requires."""
    ntp = wall_s + NTP_UNIX_OFFSET
    seconds = int(ntp)
    fraction = int((ntp - seconds) * (1 << 32)) & 0xFFFFFFFF
    sr = struct.pack(
        "!BBHIIIIII",
        0x80,
        _RTCP_SR,
        6,
        ssrc,
        seconds & 0xFFFFFFFF,
        fraction,
        timestamp & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    return sr + _sdes_cname(ssrc, cname)


def bye(ssrc: int, packets: int, octets: int, wall_s: float, timestamp: int, cname: str) -> bytes:
    """SR, SDES and BYE: the stream ends (a compound packet must start with a report)."""
    return sender_report(ssrc, wall_s, timestamp, packets, octets, cname) + struct.pack(
        "!BBHI", 0x81, _RTCP_BYE, 1, ssrc
    )
