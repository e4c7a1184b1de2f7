"""H.264 facts from real encoder output (PyAV's libx264), and access units that start a decoder."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import av
import numpy as np
import pytest
from av.codec.context import Flags

from scopelink.seestar import h264
from scopelink.seestar.h264 import AccessUnitAssembler, NalType


def encode(
    profile: str,
    bframes: int = 0,
    *,
    frames: int = 12,
    width: int = 320,
    height: int = 240,
    global_header: bool = False,
    preset: str = "medium",
    extra: dict[str, str] | None = None,
) -> tuple[bytes | None, list[bytes]]:
    """Encode moving noise; returns the encoder's extradata and its packets in decode order."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.framerate = Fraction(30)
    # No scene cuts: noise would make every frame an IDR.
    params = ":".join(["scenecut=0", *([extra.pop("x264-params")] if extra else [])])
    codec.options = {
        "profile": profile, "bf": str(bframes), "g": "6", "preset": preset,
        "x264-params": params, **(extra or {}),
    }  # fmt: skip
    if global_header:
        codec.flags |= Flags.global_header
    rng = np.random.default_rng(1)
    packets: list[bytes] = []
    for i in range(frames):
        pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        packets += [bytes(p) for p in codec.encode(frame)]
    packets += [bytes(p) for p in codec.encode(None)]
    return codec.extradata, packets


def first_of(kind: int, data: bytes) -> bytes:
    return next(n for n in h264.split_nals(data) if h264.nal_type(n) == kind)


def sps_of(**kwargs: object) -> h264.SequenceParameterSet:
    _, packets = encode(**kwargs)  # type: ignore[arg-type]
    return h264.parse_sps(first_of(NalType.SPS, packets[0]))


def decodes_alone(unit: bytes) -> bool:
    decoder = av.CodecContext.create("h264", "r")
    try:
        frames = decoder.decode(av.Packet(unit)) + decoder.decode(None)
    except av.InvalidDataError:
        return False  # no parameter sets: FFmpeg refuses the slice outright
    return len(frames) == 1


def test_baseline_stream_is_constrained_baseline_and_never_reorders() -> None:
    sps = sps_of(profile="baseline")
    assert (sps.profile_idc, sps.profile, sps.level) == (66, "Constrained Baseline", "1.3")
    assert sps.constraints & 0x40  # constraint_set1: obeys Main too
    assert sps.profile_level_id == "42c00d"
    assert (sps.width, sps.height, sps.frame_rate) == (320, 240, 30.0)
    assert not sps.may_reorder
    assert sps.max_num_reorder_frames == 0


@pytest.mark.parametrize(("profile", "idc", "name"), [("main", 77, "Main"), ("high", 100, "High")])
def test_b_frames_show_as_reordering(profile: str, idc: int, name: str) -> None:
    with_b = sps_of(profile=profile, bframes=2)
    without_b = sps_of(profile=profile, bframes=0)
    assert (with_b.profile_idc, with_b.profile) == (idc, name)
    assert (without_b.profile_idc, without_b.profile) == (idc, name)
    assert with_b.may_reorder and with_b.max_num_reorder_frames == 2
    assert not without_b.may_reorder and without_b.max_num_reorder_frames == 0


def test_reordering_without_a_bitstream_restriction_is_judged_by_profile_and_poc_type() -> None:
    main = dataclasses.replace(sps_of(profile="main", bframes=2), max_num_reorder_frames=None)
    assert main.pic_order_cnt_type == 0 and main.may_reorder  # may, so it counts as reordering
    assert not dataclasses.replace(main, pic_order_cnt_type=2).may_reorder
    baseline = dataclasses.replace(sps_of(profile="baseline"), max_num_reorder_frames=None)
    assert not baseline.may_reorder


@pytest.mark.parametrize(("width", "height"), [(1920, 1080), (1080, 1920), (318, 238)])
def test_picture_size_has_the_cropping_applied(width: int, height: int) -> None:
    sps = sps_of(profile="high", width=width, height=height, frames=1, preset="ultrafast")
    assert (sps.width, sps.height) == (width, height)


def test_high_profile_scaling_matrices_are_skipped_correctly() -> None:
    sps = sps_of(profile="high", frames=1, extra={"x264-params": "cqm=jvt"})
    assert (sps.profile, sps.width, sps.height, sps.frame_rate) == ("High", 320, 240, 30.0)


@pytest.mark.parametrize(
    ("idc", "constraints", "name"),
    [
        (66, 0x00, "Baseline"),
        (66, 0x40, "Constrained Baseline"),
        (77, 0x80, "Constrained Baseline"),
        (77, 0x40, "Main"),
        (88, 0xC0, "Constrained Baseline"),
        (88, 0x80, "Extended"),
        (100, 0x00, "High"),
        (100, 0x08, "Progressive High"),
        (100, 0x0C, "Constrained High"),
        (110, 0x10, "High 10 Intra"),
        (99, 0x00, "profile 99"),
    ],
)
def test_profile_name_follows_the_constraint_flags(idc: int, constraints: int, name: str) -> None:
    assert h264.profile_name(idc, constraints) == name


def test_level_1b_is_named() -> None:
    sps = sps_of(profile="baseline", frames=1)
    assert dataclasses.replace(sps, level_idc=11, constraints=0x50).level == "1b"
    assert dataclasses.replace(sps, level_idc=9).level == "1b"
    assert dataclasses.replace(sps, level_idc=31).level == "3.1"


def test_emulation_prevention_bytes_are_removed() -> None:
    assert h264.unescape(b"\x67\x00\x00\x03\x01\x00\x00\x03\x00") == b"\x00\x00\x01\x00\x00\x00"
    assert h264.unescape(b"\x67\x00\x03") == b"\x00\x03"


def test_annexb_split_takes_three_and_four_byte_start_codes() -> None:
    data = b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x67\x42\x00\x00\x00\x00\x01\x65\x88"
    assert h264.split_annexb(data) == [b"\x09\xf0", b"\x67\x42", b"\x65\x88"]
    assert h264.split_length_prefixed(b"\x00\x00\x00\x02\x09\xf0\x00\x00\x00\x01\x65") == [
        b"\x09\xf0",
        b"\x65",
    ]
    with pytest.raises(h264.BitstreamError):
        h264.split_length_prefixed(b"\x00\x00\x00\x09\x65")


def test_pps_says_whether_browsers_can_decode_it() -> None:
    _, packets = encode("baseline", frames=1)
    pps = h264.parse_pps(first_of(NalType.PPS, packets[0]))
    assert (pps.slice_groups, pps.redundant_pictures, pps.cabac) == (1, False, False)
    _, packets = encode("high", frames=1)
    assert h264.parse_pps(first_of(NalType.PPS, packets[0])).cabac
    # pps_id 0, sps_id 0, CAVLC, no field POC, num_slice_groups_minus1 = 1: FMO.
    fmo = bytes([0x68, 0b1100_0100, 0b0000_0000])
    assert h264.parse_pps(fmo).slice_groups == 2


def test_parameter_sets_are_rejected_when_cut_short() -> None:
    _, packets = encode("high", frames=1)
    sps = first_of(NalType.SPS, packets[0])
    with pytest.raises(h264.BitstreamError):
        h264.parse_sps(sps[:6])
    with pytest.raises(h264.BitstreamError):
        h264.parse_sps(first_of(NalType.PPS, packets[0]))


def test_every_idr_starts_a_decoder_when_parameter_sets_come_out_of_band() -> None:
    extradata, packets = encode("baseline", frames=13, global_header=True)
    assert extradata and all(
        h264.nal_type(n) not in (NalType.SPS, NalType.PPS)
        for p in packets
        for n in h264.split_nals(p)
    )  # the encoder put them in the extradata only, as an SDP's sprop-parameter-sets does
    assembler = AccessUnitAssembler(extradata)
    assert assembler.sequence is not None and assembler.sequence.width == 320
    units = [assembler.assemble(p) for p in packets]
    keyframes = [u for u in units if u.idr]
    assert len(keyframes) == 3  # g=6 over 13 frames
    for unit in keyframes:
        assert [h264.nal_type(n) for n in h264.split_annexb(unit.data)][:2] == [7, 8]
        assert decodes_alone(unit.data)
    assert not decodes_alone(next(u for u in units if not u.idr).data)


def test_parameter_sets_seen_in_band_are_put_in_front_of_later_idrs() -> None:
    _, packets = encode("baseline", frames=13)
    assembler = AccessUnitAssembler()
    # Strip the in-band sets from every IDR but the first, as a stream that sends them once.
    stripped = [packets[0]] + [
        h264.to_annexb(
            n for n in h264.split_nals(p) if h264.nal_type(n) not in (NalType.SPS, NalType.PPS)
        )
        for p in packets[1:]
    ]
    units = [assembler.assemble(p) for p in stripped]
    assert [u.parameters_changed for u in units[:2]] == [True, False]
    assert all(decodes_alone(u.data) for u in units if u.idr)
    assert sum(u.idr for u in units) == 3


def test_length_prefixed_units_come_out_as_annexb() -> None:
    extradata, packets = encode("baseline", frames=2, global_header=True)
    assert extradata is not None
    avcc = b"".join(len(n).to_bytes(4, "big") + n for n in h264.split_nals(packets[0]))
    config = bytes([1, 66, 0xC0, 13, 0xFF, 0xE1])
    sps = first_of(NalType.SPS, extradata)
    pps = first_of(NalType.PPS, extradata)
    config += len(sps).to_bytes(2, "big") + sps + b"\x01" + len(pps).to_bytes(2, "big") + pps
    unit = AccessUnitAssembler(config).assemble(avcc)
    assert unit.idr and unit.data.startswith(h264.START_CODE + sps)
    assert decodes_alone(unit.data)


def test_an_access_unit_delimiter_stays_first() -> None:
    extra = {"x264-params": "aud=1"}
    extradata, packets = encode("baseline", frames=1, global_header=True, extra=extra)
    # x264 writes its SEI ahead of the first delimiter; a camera's unit starts with it.
    first = [n for n in h264.split_nals(packets[0]) if h264.nal_type(n) != NalType.SEI]
    assert h264.nal_type(first[0]) == NalType.AUD
    unit = AccessUnitAssembler(extradata).assemble(h264.to_annexb(first))
    kinds = [h264.nal_type(n) for n in h264.split_annexb(unit.data)]
    assert kinds[:4] == [NalType.AUD, NalType.SPS, NalType.PPS, NalType.IDR]
    assert decodes_alone(unit.data)
