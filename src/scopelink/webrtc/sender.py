"""What scopelink adds to aiortc's `RTCRtpSender`, and the only module that touches its privates.

aiortc has no public hook for a packet track's RTCP feedback or its retransmissions, and no
public counters: this module wraps the two methods (`observe_rtcp`, `limit_retransmissions`) and
reads its SSRC, counters and RTT (`sender_ssrc`, `packets_sent`, `octets_sent`, `smoothed_rtt_ms`,
`report_rtt_ms`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender, rtcrtpsender

log = logging.getLogger(__name__)

#: aiortc's private parts this module reads, wraps or sets, all of `RTCRtpSender` but the module
#: global. They were written against the aiortc pinned in pyproject.toml; several are read with
#: `getattr` defaults that would hide their loss, so tests/webrtc/test_peer.py checks each one
#: on a real sender and fails loudly when an aiortc upgrade removes or renames it.
AIORTC_SENDER_PRIVATES = (
    "_ssrc",  # our RTCP observer matches reports to the sender
    "_handle_rtcp_packet",  # wrapped: PLI/FIR/REMB reach us (observe_rtcp)
    "_retransmit",  # wrapped: retransmission budget (limit_retransmissions)
    "_RTCRtpSender__rtp_history",  # the packets kept for NACKs, for their sizes
    "_RTCRtpSender__rtt",  # aiortc's smoothed RTT
    "_RTCRtpSender__lsr",  # last sender report sent, for an unsmoothed RTT
    "_RTCRtpSender__lsr_time",
    "_RTCRtpSender__packet_count",  # packets and bytes sent
    "_RTCRtpSender__octet_count",
)
AIORTC_MODULE_PRIVATES = (
    (rtcrtpsender, "RTP_HISTORY_SIZE"),  # set: the NACK history length
)

#: Packets aiortc keeps for retransmission on NACK. Its default, 128, is less than one full-tier
#: keyframe (~200 packets of ~1.2 kB): the keyframe's first packets were gone before the NACK
#: for them came, so under loss a full-tier keyframe never completed (tests/e2e/test_network.py).
#: 1024 packets are ~1.2 MB per peer, about 2 s at 4 Mbit/s. aiortc reads the module global on
#: every packet; 65536 is a multiple of it, so sequence wrap-around stays consistent.
NACK_HISTORY_PACKETS = 1024
rtcrtpsender.RTP_HISTORY_SIZE = NACK_HISTORY_PACKETS


def sender_ssrc(sender: RTCRtpSender) -> int:
    """The SSRC the sender's RTP goes out with (receiver reports name it)."""
    return int(sender._ssrc)


def packets_sent(sender: RTCRtpSender) -> int:
    """RTP packets sent (not resends)."""
    return int(getattr(sender, "_RTCRtpSender__packet_count", 0))


def octets_sent(sender: RTCRtpSender) -> int:
    """RTP payload bytes sent."""
    return int(getattr(sender, "_RTCRtpSender__octet_count", 0))


def smoothed_rtt_ms(sender: RTCRtpSender) -> float | None:
    """aiortc's RTT, smoothed heavily (0.85 per report)."""
    rtt = getattr(sender, "_RTCRtpSender__rtt", None)
    return None if rtt is None else rtt * 1000.0


def report_rtt_ms(sender: RTCRtpSender, lsr: int, dlsr: int) -> float | None:
    """The RTT one receiver report gives (its LSR and DLSR), unsmoothed; None when it does not
    answer the sender report sent last."""
    sent = getattr(sender, "_RTCRtpSender__lsr", None)
    sent_at = getattr(sender, "_RTCRtpSender__lsr_time", None)
    if sent is None or sent_at is None or lsr != sent or not dlsr:
        return None
    return max(time.time() - sent_at - dlsr / 65536, 0.0) * 1000.0


def observe_rtcp(sender: RTCRtpSender, observer: Callable[[object, RTCRtpSender], None]) -> None:
    """Also give every RTCP packet addressed to `sender` to `observer`.

    aiortc 1.16 has no public hook: the DTLS transport awaits `sender._handle_rtcp_packet(p)`
    for each packet, and that method drops PLI/FIR and REMB when the track sends packets. An
    instance attribute shadows the method, so aiortc still handles the packet first (RTT, NACK).
    """
    original = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        await original(packet)
        try:
            observer(packet, sender)
        except Exception:
            # Feedback handling must never break aiortc's RTCP loop.
            log.exception("RTCP observer failed")

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


def limit_retransmissions(sender: RTCRtpSender, allow: Callable[[int, int | None], bool]) -> None:
    """Ask `allow(sequence_number, size)` before aiortc resends a NACKed packet (size None: no
    longer kept).

    Like `observe_rtcp`, an instance attribute shadows aiortc 1.16's `_retransmit(seq)`, which
    the sender awaits for every sequence number a NACK lists. The packet's size is read from the
    sender's history (private, a dict of sequence number modulo the history size to packet).
    """
    original = sender._retransmit
    history: dict[int, Any] = getattr(sender, "_RTCRtpSender__rtp_history", {})

    async def retransmit(sequence_number: int) -> None:
        packet = history.get(sequence_number % rtcrtpsender.RTP_HISTORY_SIZE)
        kept = packet is not None and packet.sequence_number == sequence_number
        if allow(sequence_number, len(packet.payload) + 12 if kept else None):
            await original(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]
