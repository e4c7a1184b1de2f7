"""What one peer was sent and what its receiver said about it, as the stats endpoints show it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from scopelink.webrtc.encoder import Codec


@dataclass(slots=True)
class PeerStats:
    """What one peer was sent and what its receiver said about it."""

    id: str
    telescope_id: str
    client: str
    tier: str
    codec: str = Codec.H264.value
    #: The peer's `PeerState` value.
    state: str = "new"
    created: float = field(default_factory=time.time)
    frames_sent: int = 0
    keyframes_sent: int = 0
    frames_skipped: int = 0
    #: RTP payload bytes and packets, from the sender's counters.
    bytes_sent: int = 0
    packets_sent: int = 0
    #: Over the last sampling interval.
    fps: float = 0.0
    bitrate_bps: int = 0
    #: From RTCP receiver reports (RTT smoothed by aiortc).
    rtt_ms: float | None = None
    fraction_lost: float | None = None
    #: Interarrival jitter from the newest receiver report (RFC 3550), in ms.
    jitter_ms: float | None = None
    #: Over the last sampling interval: the packets the receiver NACKed (each once) over the
    #: packets sent, i.e. loss before retransmission, which receiver reports do not show.
    nack_loss: float | None = None
    #: The receiver's estimated maximum bitrate (REMB).
    remb_bps: int | None = None
    keyframe_requests: int = 0
    tier_switches: int = 0
    #: Tier switches made to a keyframe older than the picture shown (the new tier stayed
    #: behind for the whole hold, `track.SWITCH_HOLD_S`): the picture stepped back once.
    late_switches: int = 0
    #: NACKed packets resent, their bytes, and NACKed packets not resent (over the budget or no
    #: longer kept).
    retransmitted_packets: int = 0
    retransmitted_bytes: int = 0
    retransmissions_refused: int = 0
    #: Adaptation: this peer's estimated available bitrate, why it last changed, whether its
    #: link has shown its limit, the bitrate its tier's shared encoder runs at now, and the
    #: largest frame that encoder may send, in ms of that bitrate (its VBV buffer).
    estimate_bps: int | None = None
    estimate_reason: str | None = None
    limited: bool = False
    tier_bitrate_bps: int | None = None
    tier_vbv_ms: int | None = None
