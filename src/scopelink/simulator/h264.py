"""H.264 for the simulated RTSP camera: the libx264 encoder and the RTP payload format (RFC 6184).

`H264Encoder` turns RGB pictures into access units (lists of NAL units), one encode per frame
whatever the number of viewers. libx264 repeats SPS and PPS in-band before every IDR (PyAV
opens it without global headers), so a viewer that joins or resumes at any IDR can decode.

`packetize()` is the RFC 6184 packetisation, written here rather than borrowed from aiortc's
private `H264Encoder._packetize`: it is some thirty lines, and a private method of another
library could change under us. Single NAL unit packets for NAL units that fit, FU-A fragments for
the rest; no STAP-A (packetization-mode=1 allows it, but nothing needs it).
"""

from __future__ import annotations

import base64
import fractions
import time
from dataclasses import dataclass

import av
import cv2
import numpy as np
from av.video.frame import PictureType

#: RTP's video clock.
CLOCK_HZ = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK_HZ)
NAL_SPS = 7
NAL_PPS = 8
NAL_IDR = 5
NAL_FU_A = 28
#: Largest RTP payload: fits a 1500-byte Ethernet MTU with IP, UDP and RTP headers to spare.
MAX_PAYLOAD = 1400


@dataclass(frozen=True, slots=True)
class H264Settings:
    """How the camera's video is encoded (see docs/simulator.md, "RTSP video", for the why)."""

    width: int = 1920
    height: int = 1080
    fps: float = 30.0
    bitrate: int = 6_000_000
    #: x264 profile: "baseline" (sent as Constrained Baseline, profile-level-id 42c0..), "main"
    #: or "high".
    profile: str = "baseline"
    b_frames: int = 0
    gop_s: float = 1.0
    preset: str = "ultrafast"

    @property
    def gop_frames(self) -> int:
        return max(1, round(self.fps * self.gop_s))


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One encoded picture: its NAL units (no start codes) and presentation time."""

    nals: tuple[bytes, ...]
    #: Presentation time in 90 kHz units since the encoder opened (the RTP timestamp's offset).
    pts: int
    keyframe: bool


def nal_units(annexb: bytes) -> list[bytes]:
    """Split an Annex B byte stream at its 3- or 4-byte start codes."""
    units: list[bytes] = []
    starts: list[int] = []
    i = annexb.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = annexb.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(annexb)
        unit = annexb[start:end]
        # A 4-byte start code leaves its first zero on the end of the unit before it.
        if n + 1 < len(starts) and unit.endswith(b"\x00"):
            unit = unit.rstrip(b"\x00")
        if unit:
            units.append(unit)
    return units


def packetize(nals: tuple[bytes, ...] | list[bytes], max_payload: int = MAX_PAYLOAD) -> list[bytes]:
    """RTP payloads for one access unit (RFC 6184, packetization-mode=1); the caller sets the
    marker bit on the last one."""
    payloads: list[bytes] = []
    for nal in nals:
        if len(nal) <= max_payload:
            payloads.append(nal)
            continue
        header = nal[0]
        indicator = (header & 0xE0) | NAL_FU_A  # F and NRI of the unit, type 28
        kind = header & 0x1F
        body = memoryview(nal)[1:]
        step = max_payload - 2
        for pos in range(0, len(body), step):
            start = 0x80 if pos == 0 else 0
            end = 0x40 if pos + step >= len(body) else 0
            payloads.append(bytes((indicator, start | end | kind)) + body[pos : pos + step])
    return payloads


def depacketize(payloads: list[bytes]) -> list[bytes]:
    """The NAL units in a run of RTP payloads (single NAL, STAP-A, FU-A): what a receiver does."""
    units: list[bytes] = []
    fragment: bytearray | None = None
    for p in payloads:
        kind = p[0] & 0x1F
        if kind == NAL_FU_A:
            if p[1] & 0x80:
                fragment = bytearray(((p[0] & 0xE0) | (p[1] & 0x1F),))
            if fragment is not None:
                fragment += p[2:]
                if p[1] & 0x40:
                    units.append(bytes(fragment))
                    fragment = None
        elif kind == 24:  # STAP-A: 16-bit sizes
            pos = 1
            while pos + 2 <= len(p):
                size = int.from_bytes(p[pos : pos + 2], "big")
                units.append(p[pos + 2 : pos + 2 + size])
                pos += 2 + size
        else:
            units.append(p)
    return units


class H264Encoder:
    """libx264 through PyAV with `H264Settings`; not thread-safe (one worker thread uses it)."""

    def __init__(self, settings: H264Settings) -> None:
        self.settings = s = settings
        codec = av.CodecContext.create("libx264", "w")
        assert isinstance(codec, av.VideoCodecContext)
        codec.width, codec.height = s.width, s.height
        codec.pix_fmt = "yuv420p"
        codec.time_base = TIME_BASE
        codec.framerate = fractions.Fraction(round(s.fps * 1000), 1000)
        codec.bit_rate = s.bitrate
        codec.gop_size = s.gop_frames
        options = {
            "preset": s.preset,
            # A forced I-frame must be an IDR, or a joining decoder has nothing to start from.
            "forced-idr": "1",
            # Keyframes exactly every GOP: a viewer that skipped frames knows when it resumes.
            "sc_threshold": "0",
            # The VBV keeps an IDR from bursting far above the bitrate: half a second of it.
            "maxrate": str(s.bitrate),
            "bufsize": str(s.bitrate // 2),
        }
        # x264 signals the profile its tools need, and ultrafast turns off the tools of Main
        # (CABAC) and High (8x8 transform): ask for them back so the profile is what was set.
        options["profile"] = s.profile
        tools = {"main": "cabac=1", "high": "cabac=1:8x8dct=1"}.get(s.profile)
        if tools:
            options["x264-params"] = tools
        if s.b_frames == 0:
            # No lookahead, one packet out per frame in. zerolatency would also force bframes=0,
            # so a B-frame stream (the one a browser cannot take as is) goes without it.
            options["tune"] = "zerolatency"
        codec.options = options
        codec.max_b_frames = s.b_frames
        self._codec = codec
        self.frames_in = 0
        self.last_encode_s = 0.0

    def encode(self, rgb: np.ndarray, pts: int, force_idr: bool = False) -> list[AccessUnit]:
        """Encode one RGB picture of the settings' size; B-frames may hold output back."""
        started = time.perf_counter()
        frame = av.VideoFrame.from_ndarray(
            cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), format="yuv420p"
        )
        frame.pts = pts
        frame.time_base = TIME_BASE
        frame.pict_type = PictureType.I if force_idr else PictureType.NONE
        units = [
            AccessUnit(tuple(nal_units(bytes(p))), int(p.pts or 0), bool(p.is_keyframe))
            for p in self._codec.encode(frame)
        ]
        self.frames_in += 1
        self.last_encode_s = time.perf_counter() - started
        return units


@dataclass(frozen=True, slots=True)
class ParameterSets:
    """SPS and PPS of a stream, as the SDP carries them."""

    sps: bytes
    pps: bytes

    @property
    def profile_level_id(self) -> str:
        """profile_idc, constraint flags and level_idc: the SPS's three bytes after its header."""
        return self.sps[1:4].hex()

    @property
    def sprop(self) -> str:
        return ",".join(base64.b64encode(p).decode() for p in (self.sps, self.pps))


def probe_parameter_sets(settings: H264Settings) -> ParameterSets:
    """Encode one black frame to learn the stream's SPS and PPS (they depend only on settings)."""
    encoder = H264Encoder(settings)
    black = np.zeros((settings.height, settings.width, 3), np.uint8)
    units: list[AccessUnit] = []
    pts = 0
    while not units:  # B-frames delay the first output by a few frames
        units = encoder.encode(black, pts, force_idr=pts == 0)
        pts += 3000
    nals = units[0].nals
    sps = next(n for n in nals if n[0] & 0x1F == NAL_SPS)
    pps = next(n for n in nals if n[0] & 0x1F == NAL_PPS)
    return ParameterSets(sps, pps)
