"""The steps every signaling transport takes, with one error model: offer in, answer out;
candidates in. WHEP (`web/whep.py`) and the signaling conversation (`webrtc/signaling.py`, on
the app's WebSocket or the proxy's broker link) are thin
adapters over these; each maps a `NegotiationError` to its own terms by its `kind`
(`negotiation_problem` gives the shared one).
"""

from __future__ import annotations

from enum import StrEnum

from aiortc import RTCIceServer
from aiortc.exceptions import InvalidStateError

from scopelink.schema.problems import PROBLEM_TYPE
from scopelink.schema.state import Problem
from scopelink.webrtc.encoder import FULL, Tier
from scopelink.webrtc.peer import DataChannelHandler, IceRestartUnsupported, Peer
from scopelink.webrtc.sdp import OfferRejected
from scopelink.webrtc.sessions import FrameSource, PeerManager, TooManyPeers


class NegotiationProblem(StrEnum):
    """Why an offer or a candidate was not taken."""

    #: The limit of concurrent peers is reached.
    TOO_MANY_PEERS = "too-many-peers"
    #: Not an offer this server can answer (no receiving video, no common codec, bad SDP).
    OFFER_REJECTED = "offer-rejected"
    #: An unreadable candidate.
    BAD_CANDIDATE = "bad-candidate"
    #: A new ICE ufrag: aiortc cannot restart ICE, so the client starts a new session.
    ICE_RESTART_UNSUPPORTED = "ice-restart-unsupported"
    #: Candidates for a session that is closed, or not yet made.
    NO_SESSION = "no-session"


class NegotiationError(Exception):
    def __init__(self, kind: NegotiationProblem, title: str, detail: str) -> None:
        super().__init__(f"{title}: {detail}")
        self.kind = kind
        self.title = title
        self.detail = detail


#: A refused offer or candidate's status (WHEP's HTTP status, and a signaling error's `status`).
NEGOTIATION_STATUS: dict[NegotiationProblem, int] = {
    NegotiationProblem.TOO_MANY_PEERS: 503,
    NegotiationProblem.OFFER_REJECTED: 400,
    NegotiationProblem.BAD_CANDIDATE: 400,
    NegotiationProblem.ICE_RESTART_UNSUPPORTED: 422,
    NegotiationProblem.NO_SESSION: 409,
}


def negotiation_problem(error: NegotiationError) -> Problem:
    """A refused offer or candidate as a problem, the same on every signaling path."""
    return Problem(
        type=PROBLEM_TYPE + error.kind.value,
        title=error.title,
        status=NEGOTIATION_STATUS[error.kind],
        detail=error.detail,
    )


async def start_session(
    manager: PeerManager,
    telescope_id: str,
    source: FrameSource,
    offer: str,
    *,
    client: str,
    tier: Tier = FULL,
    ice_servers: list[RTCIceServer] | None = None,
    on_datachannel: DataChannelHandler | None = None,
) -> tuple[Peer, str]:
    """A new peer session for `offer`, and its answer SDP; `on_datachannel` takes the data
    channels the viewer opens."""
    try:
        return await manager.create(
            telescope_id,
            source,
            offer,
            client=client,
            tier=tier,
            ice_servers=ice_servers,
            on_datachannel=on_datachannel,
        )
    except TooManyPeers as exc:
        raise NegotiationError(
            NegotiationProblem.TOO_MANY_PEERS, "Too many viewers", str(exc)
        ) from None
    except OfferRejected as exc:
        raise NegotiationError(
            NegotiationProblem.OFFER_REJECTED, "Offer not accepted", str(exc)
        ) from None


async def add_candidates(session: Peer | None, sdpfrag: str) -> int:
    """Trickle an `application/trickle-ice-sdpfrag` body into `session`; how many were added."""
    if session is None:
        raise NegotiationError(
            NegotiationProblem.NO_SESSION, "No session", "send an offer before candidates"
        )
    try:
        return await session.add_remote_candidates(sdpfrag)
    except IceRestartUnsupported as exc:
        raise NegotiationError(
            NegotiationProblem.ICE_RESTART_UNSUPPORTED, "ICE restart unsupported", str(exc)
        ) from None
    except OfferRejected as exc:
        raise NegotiationError(
            NegotiationProblem.BAD_CANDIDATE, "Bad candidate", str(exc)
        ) from None
    except InvalidStateError:
        raise NegotiationError(
            NegotiationProblem.NO_SESSION,
            "Session closed",
            "the session is closed; send a new offer",
        ) from None


def candidate_fragment(candidate: str | None, ufrag: str | None = None) -> str:
    """One browser candidate (`RTCIceCandidate.candidate`: `candidate:…`, or null or "" for the
    end of candidates) as the trickle-ice-sdpfrag body `add_candidates` takes."""
    lines = [] if ufrag is None else [f"a=ice-ufrag:{ufrag}"]
    if candidate:
        value = candidate.removeprefix("a=").strip()
        if not value.startswith("candidate:") or "\n" in value or "\r" in value:
            raise NegotiationError(
                NegotiationProblem.BAD_CANDIDATE,
                "Bad candidate",
                "a candidate is 'candidate:…' on one line",
            )
        lines.append(f"a={value}")
    else:
        lines.append("a=end-of-candidates")
    return "\r\n".join(lines) + "\r\n"
