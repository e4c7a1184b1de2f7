"""VP8 through PyAV's libvpx, for browsers that cannot take H.264: the real-time settings.

A leaf module (PyAV only): `encoder.TierEncoder` opens its VP8 contexts here, with everything
tier-specific passed in. Settings, measured on the 2-vCPU box (docs/webrtc-media.md):

- `deadline=realtime` and a fixed speed `cpu-used=-12` (a negative value fixes the speed; a
  positive one lets libvpx pick a speed from its time budget per frame, which varies);
- `lag-in-frames=0` (no look-ahead and no alt-ref: one packet out for every frame in);
- `error-resilient`: no frame's entropy state depends on the frames before it, so a decoder
  that lost a frame keeps decoding (with artefacts until the next keyframe) instead of reading
  the following frames with wrong probabilities;
- CBR (minrate = maxrate = bitrate) with a buffer of `buffer_s` seconds of bitrate and a
  keyframe capped at `MAX_INTRA_PCT` % of an average frame, the counterpart of x264's VBV;
- a keyframe every `gop_frames` frames and on request (`PictureType.I` on the frame).

libvpx ignores a `bit_rate` changed on an open context (FFmpeg's wrapper passes the rate
control settings to libvpx only when it opens; measured: 2 → 0.5 Mbit/s, the output stayed at
2 Mbit/s), so a new bitrate needs a new context, which starts with a keyframe.
"""

from __future__ import annotations

import fractions

import av

#: libvpx's name in libavcodec.
ENCODER = "libvpx"
#: Fixed speed (VP8 knows 0..16; libwebrtc uses 6 on desktops): encode time at 1080×1920 is
#: close to x264 `ultrafast`'s here, see bench/bench_webrtc_encode.py.
CPU_USED = -12
#: A keyframe may be at most this many percent of an average frame (libvpx `max-intra-rate`).
MAX_INTRA_PCT = 300
#: One thread: libvpx's VP8 row threads wait on each other by spinning, and on two busy cores
#: (server, simulator, browsers) two threads were slower and far more jittery than one
#: (measured at 1080×1920 under load: p50 36 vs 21 ms, worst frame 455 vs 51 ms).
THREADS = 1


def open_vp8(
    size: tuple[int, int],
    bitrate: int,
    *,
    framerate: fractions.Fraction,
    gop_frames: int,
    time_base: fractions.Fraction,
    buffer_s: float,
) -> av.VideoCodecContext:
    """A libvpx VP8 context at `size` and `bitrate` with the settings in the module docstring."""
    codec = av.CodecContext.create(ENCODER, "w")
    assert isinstance(codec, av.VideoCodecContext)
    codec.width, codec.height = size
    codec.pix_fmt = "yuv420p"
    codec.time_base = time_base
    codec.framerate = framerate
    codec.bit_rate = bitrate
    codec.gop_size = gop_frames
    codec.qmin, codec.qmax = 2, 56
    codec.thread_count = THREADS
    codec.options = {
        "deadline": "realtime",
        "cpu-used": str(CPU_USED),
        "lag-in-frames": "0",
        "auto-alt-ref": "0",
        "error-resilient": "default",
        # minrate = maxrate = bit_rate makes libavcodec ask libvpx for CBR.
        "minrate": str(bitrate),
        "maxrate": str(bitrate),
        "bufsize": str(int(bitrate * buffer_s)),
        "max-intra-rate": str(MAX_INTRA_PCT),
    }
    return codec
