"""The SDP this server reads: the viewer's offer (which codec), and trickled ICE fragments.

Offers are checked before aiortc sees them, so an offer we cannot answer gets a reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scopelink.webrtc.encoder import Codec

#: The codecs we can send, best first: VP8 only for a browser that cannot take H.264.
CODECS = (Codec.H264, Codec.VP8)


class OfferRejected(ValueError):
    """An SDP offer this server cannot answer (no video it may send, no common codec, bad SDP)."""


@dataclass(frozen=True, slots=True)
class SdpFragment:
    """The parts of an `application/trickle-ice-sdpfrag` body (RFC 8840) this server uses."""

    ufrag: str | None
    pwd: str | None
    #: `candidate:` attribute values, without the `a=`.
    candidates: tuple[str, ...]
    end_of_candidates: bool


def parse_sdpfrag(text: str) -> SdpFragment:
    ufrag = pwd = None
    candidates: list[str] = []
    end = False
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("a=ice-ufrag:"):
            ufrag = line.split(":", 1)[1]
        elif line.startswith("a=ice-pwd:"):
            pwd = line.split(":", 1)[1]
        elif line.startswith("a=candidate:"):
            candidates.append(line[2:])
        elif line == "a=end-of-candidates":
            end = True
    return SdpFragment(ufrag, pwd, tuple(candidates), end)


def _video_sections(sdp: str) -> list[str]:
    return [s for s in re.split(r"\r?\n(?=m=)", sdp) if s.startswith("m=video")]


def check_offer(
    sdp: str, codecs: tuple[Codec, ...] = CODECS, *, accept_channels_only: bool = False
) -> Codec | None:
    """The first of `codecs` the offer's receiving video accepts; refuses any other offer
    (not SDP, no receiving video, no common codec) before aiortc sees it. With
    `accept_channels_only`, an offer of data channels and no video m-line at all is taken
    too: None."""
    if not sdp.lstrip().startswith("v=0"):
        raise OfferRejected("the body is not an SDP offer")
    sections = _video_sections(sdp)
    if not sections:
        if accept_channels_only and re.search(r"^m=application ", sdp, re.MULTILINE):
            return None
        raise OfferRejected("the offer has no video m-line (nor data channels)")
    for section in sections:
        if not re.search(r"^a=(sendonly|inactive)\s*$", section, re.MULTILINE):
            return _choose_codec(section, codecs)
    raise OfferRejected("the offer's video m-line does not receive (need recvonly or sendrecv)")


def _choose_codec(section: str, codecs: tuple[Codec, ...]) -> Codec:
    offered = re.findall(r"^a=rtpmap:\d+ ([\w-]+)/90000", section, re.MULTILINE)
    names = {name.upper() for name in offered}
    for codec in codecs:
        if codec.rtp_name in names:
            return codec
    ours = ", ".join(c.rtp_name for c in codecs)
    listed = ", ".join(dict.fromkeys(n for n in offered if n.lower() not in ("rtx", "red")))
    raise OfferRejected(
        f"the offer's video accepts no codec this server sends ({ours}); "
        f"it offers {listed or 'none'}"
    )


def ice_ufrag(sdp: str) -> str | None:
    found = re.search(r"^a=ice-ufrag:(\S+)", sdp, re.MULTILINE)
    return found.group(1) if found else None
