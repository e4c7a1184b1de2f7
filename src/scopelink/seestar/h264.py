"""H.264 bitstream facts: NAL units, parameter sets and access units in Annex-B form.

Owns what the RTSP source must know about the video it forwards without decoding it: where NAL
units start, what the sequence and picture parameter sets say (profile, level, size, whether
pictures may be reordered, whether browsers' decoders can take it), and how to make each IDR
access unit start a decoder on its own. Pure bytes in, facts out: no FFmpeg, no I/O.
Section numbers refer to ITU-T H.264 (08/2021).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

START_CODE = b"\x00\x00\x00\x01"


class NalType(IntEnum):
    """The NAL unit types the source looks at (Table 7-1)."""

    SLICE = 1
    IDR = 5
    SEI = 6
    SPS = 7
    PPS = 8
    AUD = 9


class BitstreamError(ValueError):
    """A parameter set ends early or holds values outside the standard's range."""


# -- NAL units -------------------------------------------------------------------------------------


def nal_type(nal: bytes) -> int:
    return nal[0] & 0x1F


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream (start codes removed, empty units dropped)."""
    nals: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        end = data.find(b"\x00\x00\x01", begin)
        # A four-byte start code's leading zero (and any trailing_zero_8bits) is not NAL data.
        nal = data[begin : len(data) if end < 0 else end].rstrip(b"\x00")
        if nal:
            nals.append(nal)
        start = end
    return nals


def split_length_prefixed(data: bytes, length_size: int = 4) -> list[bytes]:
    """The NAL units of an AVCC (length-prefixed, as in MP4) buffer."""
    nals: list[bytes] = []
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos : pos + length_size], "big")
        pos += length_size
        if size == 0 or pos + size > len(data):
            raise BitstreamError(f"NAL length {size} runs past the buffer at {pos}")
        nals.append(data[pos : pos + size])
        pos += size
    return nals


def split_nals(data: bytes) -> list[bytes]:
    """NAL units of either framing: Annex-B if it starts with a start code, else AVCC."""
    if data.startswith(b"\x00\x00\x01") or data.startswith(START_CODE):
        return split_annexb(data)
    return split_length_prefixed(data)


def parameter_sets_from_extradata(extradata: bytes | None) -> list[bytes]:
    """SPS and PPS NAL units from a decoder configuration: Annex-B (RTSP's SDP) or avcC (MP4)."""
    if not extradata:
        return []
    if extradata[0] != 1:
        return [n for n in split_annexb(extradata) if nal_type(n) in (NalType.SPS, NalType.PPS)]
    # avcC (ISO/IEC 14496-15 5.3.3.1): 5 header bytes, SPS count, SPSs, PPS count, PPSs.
    nals: list[bytes] = []
    pos = 5
    for count_mask in (0x1F, 0xFF):
        if pos >= len(extradata):
            break
        count = extradata[pos] & count_mask
        pos += 1
        for _ in range(count):
            size = int.from_bytes(extradata[pos : pos + 2], "big")
            nals.append(extradata[pos + 2 : pos + 2 + size])
            pos += 2 + size
    return nals


def to_annexb(nals: Iterable[bytes]) -> bytes:
    return b"".join(START_CODE + nal for nal in nals)


# -- bit reading -----------------------------------------------------------------------------------


def unescape(nal: bytes) -> bytes:
    """The RBSP of a NAL unit: header byte dropped, emulation prevention bytes removed (7.4.1)."""
    payload = nal[1:]
    if b"\x00\x00\x03" not in payload:
        return payload
    out = bytearray()
    zeros = 0
    for byte in payload:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class BitReader:
    """Reads the fixed-length and Exp-Golomb fields of an RBSP (9.1)."""

    def __init__(self, rbsp: bytes) -> None:
        self._value = int.from_bytes(rbsp, "big")
        self._bits = len(rbsp) * 8
        self._pos = 0

    def u(self, n: int) -> int:
        if self._pos + n > self._bits:
            raise BitstreamError("parameter set ends early")
        self._pos += n
        return (self._value >> (self._bits - self._pos)) & ((1 << n) - 1)

    def flag(self) -> bool:
        return bool(self.u(1))

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError("Exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


# -- parameter sets --------------------------------------------------------------------------------

#: Profiles whose SPS carries chroma format, bit depths and scaling matrices (7.3.2.1.1).
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})

_PROFILE_NAMES = {
    66: "Baseline",
    77: "Main",
    88: "Extended",
    100: "High",
    110: "High 10",
    122: "High 4:2:2",
    244: "High 4:4:4 Predictive",
    44: "CAVLC 4:4:4 Intra",
    83: "Scalable Baseline",
    86: "Scalable High",
    118: "Multiview High",
    128: "Stereo High",
}


def profile_name(profile_idc: int, constraints: int) -> str:
    """The profile a stream conforms to, constraint flags included (A.2, RFC 6184 table 5).

    `constraints` is the byte after profile_idc: constraint_set0_flag is its top bit.
    """
    set0, set1 = bool(constraints & 0x80), bool(constraints & 0x40)
    set3, set4, set5 = bool(constraints & 0x10), bool(constraints & 0x08), bool(constraints & 0x04)
    # A Main or Extended stream that also obeys Baseline's constraints is Constrained Baseline.
    if (
        (profile_idc == 66 and set1)
        or (profile_idc == 77 and set0)
        or (profile_idc == 88 and set0 and set1)
    ):
        return "Constrained Baseline"
    if profile_idc == 100 and set4 and set5:
        return "Constrained High"
    if profile_idc == 100 and set4:
        return "Progressive High"
    if profile_idc in (110, 122, 244) and set3:
        return f"{_PROFILE_NAMES[profile_idc]} Intra"
    return _PROFILE_NAMES.get(profile_idc, f"profile {profile_idc}")


@dataclass(frozen=True, slots=True)
class SequenceParameterSet:
    """The fields of an SPS that say what the stream is (7.3.2.1.1, E.1.1)."""

    profile_idc: int
    #: constraint_set0..5 flags and the two reserved bits, as in SDP's profile-level-id.
    constraints: int
    level_idc: int
    sps_id: int
    chroma_format_idc: int
    pic_order_cnt_type: int
    max_num_ref_frames: int
    frame_mbs_only: bool
    width: int
    height: int
    #: From the VUI's timing info, when present.
    frame_rate: float | None
    #: From the VUI's bitstream restriction, when present.
    max_num_reorder_frames: int | None

    @property
    def profile(self) -> str:
        return profile_name(self.profile_idc, self.constraints)

    @property
    def level(self) -> str:
        """The level as written in the standard: "3.1", or "1b"."""
        if self.level_idc == 9 or (
            self.level_idc == 11 and self.constraints & 0x10 and self.profile_idc in (66, 77, 88)
        ):
            return "1b"
        return f"{self.level_idc // 10}.{self.level_idc % 10}"

    @property
    def profile_level_id(self) -> str:
        """The six hex digits SDP uses for this stream (RFC 6184 8.1)."""
        return f"{self.profile_idc:02x}{self.constraints:02x}{self.level_idc:02x}"

    @property
    def may_reorder(self) -> bool:
        """Whether pictures may be output in another order than decoded (B-frames or the like).

        Known for sure when the VUI says max_num_reorder_frames; otherwise Baseline-conforming
        streams and pic_order_cnt_type 2 (output order is decode order, 8.2.1.3) cannot reorder,
        and anything else may.
        """
        if self.max_num_reorder_frames is not None:
            return self.max_num_reorder_frames > 0
        if self.profile in ("Baseline", "Constrained Baseline"):
            return False
        return self.pic_order_cnt_type != 2


def parse_sps(nal: bytes) -> SequenceParameterSet:
    """Parse an SPS NAL unit (with its header byte)."""
    if not nal or nal_type(nal) != NalType.SPS:
        raise BitstreamError("not an SPS NAL unit")
    r = BitReader(unescape(nal))
    profile_idc, constraints, level_idc = r.u(8), r.u(8), r.u(8)
    sps_id = r.ue()
    chroma_format_idc, separate_planes = 1, False
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc > 3:
            raise BitstreamError(f"chroma_format_idc {chroma_format_idc}")
        if chroma_format_idc == 3:
            separate_planes = r.flag()
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.u(1)  # qpprime_y_zero_transform_bypass_flag
        if r.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if r.flag():
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.u(1)  # delta_pic_order_always_zero_flag
        r.se()  # offset_for_non_ref_pic
        r.se()  # offset_for_top_to_bottom_field
        for _ in range(r.ue()):
            r.se()  # offset_for_ref_frame
    elif poc_type != 2:
        raise BitstreamError(f"pic_order_cnt_type {poc_type}")
    max_num_ref_frames = r.ue()
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_map_units = r.ue() + 1
    frame_mbs_only = r.flag()
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.flag() else (0, 0, 0, 0)
    # Crop units (7.4.2.1.1): chroma subsampling times field/frame.
    chroma_array_type = 0 if separate_planes else chroma_format_idc
    sub_w = 2 if chroma_array_type in (1, 2) else 1
    sub_h = 2 if chroma_array_type == 1 else 1
    crop_x, crop_y = sub_w, sub_h * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_map_units * 16 - crop_y * (crop[2] + crop[3])
    frame_rate, reorder = _parse_vui(r) if r.flag() else (None, None)
    return SequenceParameterSet(
        profile_idc=profile_idc, constraints=constraints, level_idc=level_idc, sps_id=sps_id,
        chroma_format_idc=chroma_format_idc, pic_order_cnt_type=poc_type,
        max_num_ref_frames=max_num_ref_frames, frame_mbs_only=frame_mbs_only,
        width=width, height=height, frame_rate=frame_rate, max_num_reorder_frames=reorder,
    )  # fmt: skip


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last + r.se() + 256) % 256
        last = next_scale or last


def _parse_vui(r: BitReader) -> tuple[float | None, int | None]:
    """Frame rate and max_num_reorder_frames from the VUI (E.1.1), either None if absent."""
    if r.flag():  # aspect_ratio_info_present_flag
        if r.u(8) == 255:  # Extended_SAR
            r.u(32)
    if r.flag():  # overscan_info_present_flag
        r.u(1)
    if r.flag():  # video_signal_type_present_flag
        r.u(4)
        if r.flag():  # colour_description_present_flag
            r.u(24)
    if r.flag():  # chroma_loc_info_present_flag
        r.ue()
        r.ue()
    frame_rate = None
    if r.flag():  # timing_info_present_flag
        units_in_tick, time_scale = r.u(32), r.u(32)
        r.u(1)  # fixed_frame_rate_flag
        if units_in_tick:
            # One frame is two ticks (field-based clock) in the convention every encoder follows.
            frame_rate = time_scale / (2 * units_in_tick)
    nal_hrd = r.flag()
    if nal_hrd:
        _skip_hrd(r)
    vcl_hrd = r.flag()
    if vcl_hrd:
        _skip_hrd(r)
    if nal_hrd or vcl_hrd:
        r.u(1)  # low_delay_hrd_flag
    r.u(1)  # pic_struct_present_flag
    reorder = None
    if r.flag():  # bitstream_restriction_flag
        r.u(1)  # motion_vectors_over_pic_boundaries_flag
        for _ in range(4):  # max_bytes_per_pic_denom .. log2_max_mv_length_vertical
            r.ue()
        reorder = r.ue()
        r.ue()  # max_dec_frame_buffering
    return frame_rate, reorder


def _skip_hrd(r: BitReader) -> None:
    cpb_count = r.ue() + 1
    r.u(8)  # bit_rate_scale, cpb_size_scale
    for _ in range(cpb_count):
        r.ue()
        r.ue()
        r.u(1)
    r.u(20)  # four 5-bit delay and offset lengths


@dataclass(frozen=True, slots=True)
class PictureParameterSet:
    """The fields of a PPS that decide whether a browser's decoder can take the stream (7.3.2.2)."""

    pps_id: int
    sps_id: int
    cabac: bool
    #: More than one slice group is flexible macroblock ordering (FMO), Baseline only.
    slice_groups: int
    #: None when FMO hides the field (the slice group map comes first and is not parsed).
    redundant_pictures: bool | None


def parse_pps(nal: bytes) -> PictureParameterSet:
    """Parse a PPS NAL unit (with its header byte), as far as the fields above."""
    if not nal or nal_type(nal) != NalType.PPS:
        raise BitstreamError("not a PPS NAL unit")
    r = BitReader(unescape(nal))
    pps_id, sps_id = r.ue(), r.ue()
    cabac = r.flag()
    r.u(1)  # bottom_field_pic_order_in_frame_present_flag
    slice_groups = r.ue() + 1
    if slice_groups > 1:
        return PictureParameterSet(pps_id, sps_id, cabac, slice_groups, None)
    r.ue()  # num_ref_idx_l0_default_active_minus1
    r.ue()  # num_ref_idx_l1_default_active_minus1
    r.u(3)  # weighted_pred_flag, weighted_bipred_idc
    r.se()  # pic_init_qp_minus26
    r.se()  # pic_init_qs_minus26
    r.se()  # chroma_qp_index_offset
    r.u(2)  # deblocking_filter_control_present_flag, constrained_intra_pred_flag
    return PictureParameterSet(pps_id, sps_id, cabac, slice_groups, r.flag())


# -- access units ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssembledUnit:
    """One access unit in Annex-B form, and what it holds."""

    data: bytes
    #: Holds an IDR picture (and, after assembly, the parameter sets it needs).
    idr: bool
    #: The parameter sets changed with this unit (a new SPS or PPS arrived in-band).
    parameters_changed: bool


class AccessUnitAssembler:
    """Turns demuxed access units into Annex-B units whose IDRs each start a decoder on their own.

    Remembers the newest SPS and PPS of every id, from the stream's configuration (the SDP's
    sprop-parameter-sets) and from the stream itself, and puts them in front of an IDR that
    arrives without them.
    """

    def __init__(self, extradata: bytes | None = None) -> None:
        self.sps: dict[int, bytes] = {}
        self.pps: dict[int, bytes] = {}
        for nal in parameter_sets_from_extradata(extradata):
            self._remember(nal)

    @property
    def sequence(self) -> SequenceParameterSet | None:
        """The newest SPS, parsed; None before one arrived or if it does not parse."""
        for nal in reversed(self.sps.values()):
            try:
                return parse_sps(nal)
            except BitstreamError:
                continue
        return None

    @property
    def pictures(self) -> list[PictureParameterSet]:
        parsed = []
        for nal in self.pps.values():
            try:
                parsed.append(parse_pps(nal))
            except BitstreamError:
                continue
        return parsed

    def _remember(self, nal: bytes) -> bool:
        """Keep a parameter set; True if it is new or differs from the one with its id."""
        try:
            kind = nal_type(nal)
            r = BitReader(unescape(nal))
            if kind == NalType.SPS:
                r.u(24)
                table = self.sps
            elif kind == NalType.PPS:
                table = self.pps
            else:
                return False
            key = r.ue()
        except BitstreamError:
            return False
        if table.get(key) == nal:
            return False
        table.pop(key, None)  # re-inserted last: "newest" follows arrival order
        table[key] = nal
        return True

    def assemble(self, data: bytes) -> AssembledUnit:
        """One demuxed access unit (Annex-B or AVCC) as a self-sufficient Annex-B unit."""
        nals = split_nals(data)
        changed = False
        has_sps = has_pps = idr = False
        for nal in nals:
            kind = nal_type(nal)
            if kind in (NalType.SPS, NalType.PPS):
                changed |= self._remember(nal)
                has_sps |= kind == NalType.SPS
                has_pps |= kind == NalType.PPS
            idr |= kind == NalType.IDR
        if idr and not (has_sps and has_pps):
            missing = [] if has_sps else list(self.sps.values())
            missing += [] if has_pps else list(self.pps.values())
            # Parameter sets go after an access unit delimiter, which must come first (7.4.1.2.3).
            at = 1 if nals and nal_type(nals[0]) == NalType.AUD else 0
            nals = nals[:at] + missing + nals[at:]
        elif data.startswith(b"\x00\x00\x01") or data.startswith(START_CODE):
            return AssembledUnit(data, idr, changed)  # already Annex-B and complete: no copy
        return AssembledUnit(to_annexb(nals), idr, changed)
