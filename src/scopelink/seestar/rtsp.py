"""The RTSP source (4554/tcp, 4555 for the S30's wide camera): the live H.264 video of the view
modes that stream it (Moon, Sun, planets, scenery), as compressed access units.

Owns the connection to the telescope's RTSP server: FFmpeg's demuxer (through PyAV) does RTSP,
RTP and the depacketisation of NAL units in a worker thread; this module turns its packets into
self-sufficient Annex-B access units on one 90 kHz timeline, publishes them into `units` (a
`LatestValue`, never a queue), reports what the stream is (`StreamFacts`) and whether a browser
can take it unchanged (`passthrough_ok`), and reconnects with capped backoff until closed.

Access units, H.264: FFmpeg's parser would join the NAL units of a picture, but it knows a
picture is whole only when the next one starts, a frame interval later (33 ms at 30 fps), and
FFmpeg does not pass on RTP's marker bit, which says so at once. So the demuxer runs without its
parser (`fflags=+noparse`) and the worker joins the depacketised pieces itself (`_UnitGrouper`):
pieces with the same timestamp make one unit, which goes out when a piece with a new timestamp
arrives, or as soon as it is whole: it has begun as many slices as the three pictures before it
had, and its last piece ended a NAL unit (fragments are full-size but the last). A stream whose
pictures vary in slices could have a unit sent early, before all of it: when a piece of a unit
already sent arrives, that unit was broken; consumers see a gap (they wait for a keyframe), and
from then on that source waits for the next timestamp. Other codecs keep FFmpeg's parser.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from fractions import Fraction

import av

from scopelink.media.latest import LatestValue
from scopelink.seestar import h264
from scopelink.seestar.h264 import AccessUnitAssembler
from scopelink.seestar.link import DEAD_PEER_S, ConnectionState, ConnectionStates
from scopelink.settings import RTSP_PORT, Backoff

log = logging.getLogger(__name__)

#: RTP's clock rate for video (RFC 3551): every `AccessUnit.pts` counts in these.
CLOCK_RATE = 90_000
#: Units whose pts deltas measure the frame rate.
_RATE_WINDOW = 60
#: Most units waiting to be published one loop iteration apart; beyond it the oldest go.
_MAX_HANDOVER = 8


class Transport(StrEnum):
    """How RTP travels: interleaved in the RTSP connection, or as UDP datagrams."""

    TCP = "tcp"
    UDP = "udp"


@dataclass(frozen=True, slots=True)
class AccessUnit:
    """One compressed picture, ready to forward or decode."""

    #: Annex-B with start codes; every IDR unit carries its SPS and PPS in front.
    data: bytes
    #: Holds an IDR: a decoder can start here on its own.
    keyframe: bool
    #: Presentation time on the 90 kHz clock, one timeline across reconnects (a new connection
    #: continues from the last unit plus the wall time in between). Increases unless the stream
    #: reorders (B-frames), which `passthrough_ok` refuses.
    pts: int
    #: `time.monotonic()` when the demuxer handed the unit over whole.
    received: float
    #: Counts units since the source started (1 for the first); a gap means units were skipped.
    number: int
    #: The connection attempt it came on (1 for the first): when it changes, the decoder's
    #: references are gone and a consumer must wait for a keyframe.
    session: int


@dataclass(frozen=True, slots=True)
class StreamFacts:
    """What the stream is, from the SDP, the SPS/PPS and what was measured so far."""

    codec: str
    transport: Transport
    #: From the SPS (H.264 only, else None): name ("Constrained Baseline"), profile_idc and the
    #: constraint-flags byte, level_idc and the level as written ("3.1").
    profile: str | None = None
    profile_idc: int | None = None
    constraints: int | None = None
    level_idc: int | None = None
    level: str | None = None
    width: int | None = None
    height: int | None = None
    #: Measured from the pts of the units seen; until then what the stream declares.
    frame_rate: float | None = None
    #: Seconds and units between the last two keyframes; None until two were seen.
    keyframe_interval_s: float | None = None
    keyframe_interval_units: int | None = None
    #: The stream may output pictures in another order than it sends them (B-frames): said by
    #: the SPS, or seen in the pts.
    reorders: bool = False
    #: From the SPS's VUI when present.
    max_num_reorder_frames: int | None = None
    pic_order_cnt_type: int | None = None
    #: From the PPS: flexible macroblock ordering and redundant pictures, which browsers'
    #: decoders do not implement; CABAC (not in Baseline).
    slice_groups: int | None = None
    redundant_pictures: bool | None = None
    cabac: bool | None = None

    @property
    def profile_level_id(self) -> str | None:
        """The six hex digits an SDP offer would use for this stream (RFC 6184)."""
        if self.profile_idc is None or self.constraints is None or self.level_idc is None:
            return None
        return f"{self.profile_idc:02x}{self.constraints:02x}{self.level_idc:02x}"


def passthrough_ok(facts: StreamFacts) -> str | None:
    """None if browsers can be sent this stream unchanged over WebRTC, else the reason why not.

    Browsers must decode every H.264 stream they negotiate in (Constrained) Baseline; whether
    they take Main or High depends on the browser and its hardware, so those are re-encoded.
    Reordered pictures (B-frames) are refused because WebRTC's H.264 path sends pictures in
    the order they are shown and decoders there run without a reorder delay.
    """
    if facts.codec != "h264":
        return f"the stream is {facts.codec}, not H.264"
    if facts.profile is None:
        return "no SPS seen yet: the profile is unknown"
    if facts.profile not in ("Baseline", "Constrained Baseline"):
        return f"profile {facts.profile} is not (Constrained) Baseline"
    if facts.slice_groups is not None and facts.slice_groups > 1:
        return "the stream uses flexible macroblock ordering, which browsers do not decode"
    if facts.redundant_pictures:
        return "the stream uses redundant pictures, which browsers do not decode"
    if facts.reorders:
        return "the stream reorders pictures (B-frames)"
    return None


@dataclass(slots=True)
class RtspStats:
    """Counters since the source was created."""

    units: int = 0
    keyframes: int = 0
    bytes: int = 0
    #: Streams that started playing after the first did (a failed attempt is not one).
    reconnects: int = 0
    #: Connection attempts that failed before the stream started.
    failed_attempts: int = 0
    #: Sessions that ended because nothing arrived for `stall_timeout` seconds.
    stalls: int = 0
    #: Units dropped unpublished because more than a few arrived in one loop iteration.
    dropped: int = 0
    #: Pieces that came after their unit had gone out as whole (it was not): after the first,
    #: units wait for the next timestamp (`RtspSource.early_units` is False).
    split_units: int = 0


class RtspSource(ConnectionStates):
    """Receives the telescope's RTSP video; subscribe to `units` for its access units."""

    def __init__(
        self,
        host: str,
        port: int = RTSP_PORT,
        *,
        path: str = "/stream",
        transport: Transport | str = Transport.TCP,
        backoff: Backoff | None = None,
        connect_timeout: float = 5.0,
        stall_timeout: float = DEAD_PEER_S,
        name: str = "rtsp",
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.url = f"rtsp://{host}:{port}{path}"
        self.transport = Transport(transport)
        self.name = name
        self.connect_timeout = connect_timeout
        #: Seconds without a packet after which the connection counts as dead (a stall, or a
        #: telescope that vanished without a FIN).
        self.stall_timeout = stall_timeout
        self._backoff = backoff or Backoff()
        self._rng = random.Random()
        #: The newest access unit; consumers `await units.next(seq)` and handle gaps.
        self.units: LatestValue[AccessUnit] = LatestValue()
        #: What the stream is; None until the first connection.
        self.facts: StreamFacts | None = None
        #: Why the last attempt or connection ended, for the UI.
        self.last_error: str | None = None
        self.stats = RtspStats()
        self._task: asyncio.Task[None] | None = None
        self._session: _Session | None = None
        self._sessions = 0
        self._played = False
        self._timeline = _Timeline()
        self._meter = _Meter()
        self._retry_now = asyncio.Event()
        # Units that arrived together, published one loop iteration apart (see `_hand_over`).
        self._handover: deque[AccessUnit] = deque()
        self._handing_over = False
        #: Whether a unit may go out as soon as it looks whole, not only when the next picture
        #: starts; False for good once one was not (see the module docstring).
        self.early_units = True

    # -- state ----------------------------------------------------------------------------------

    def _where(self) -> str:
        return self.url

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start receiving in the background; returns at once. A closed source starts afresh."""
        if self._task is not None and not self._task.done():
            return
        if self.units.closed:
            self.units = self.units.renew()
        self._set_state(ConnectionState.CONNECTING)
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-source")

    async def wait_connected(self, timeout: float) -> None:
        """Wait until the stream plays; TimeoutError after `timeout`."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    def retry_now(self) -> None:
        """Skip the current backoff wait, e.g. when the telescope says the stream is back."""
        self._retry_now.set()

    async def close(self) -> None:
        """Stop for good; returns at once even if the worker is blocked in a read.

        A blocked worker ends by itself within `stall_timeout` (or `connect_timeout` while
        connecting) and publishes nothing after this returns.
        """
        if self._state is ConnectionState.CLOSED:
            return
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._end_session()
        self.units.close()
        self._set_state(ConnectionState.CLOSED)

    async def __aenter__(self) -> RtspSource:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        quiet_reason: str | None = None
        while True:
            loop = asyncio.get_running_loop()
            self._sessions += 1
            session = _Session(self, loop, self._sessions)
            self._session = session
            session.start()
            try:
                reason = await session.done
            finally:
                self._end_session()
            if session.units:
                attempt = 0
            self._set_state(ConnectionState.RECONNECTING)
            self.last_error = reason
            delay = self._backoff.delay(attempt, self._rng.random())
            attempt += 1
            # A telescope out of its streaming modes refuses every attempt: say so once.
            level = logging.DEBUG if reason == quiet_reason else logging.INFO
            log.log(level, "%s: %s; retrying in %.2f s", self.name, reason, delay)
            quiet_reason = reason
            # Cleared after the wait: a retry_now() during a failing attempt still counts.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry_now.wait(), delay)
            self._retry_now.clear()

    def _end_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.stop()

    # -- called on the loop by the worker -------------------------------------------------------

    def _on_playing(self, session: _Session, facts: StreamFacts) -> None:
        if session is not self._session:
            return
        if self._played:
            self.stats.reconnects += 1
        self._played = True
        self._timeline.new_session()
        self._meter = _Meter()
        self.facts = facts
        self.last_error = None
        self._set_state(ConnectionState.CONNECTED)

    def _on_split_unit(self, session: _Session) -> None:
        """A unit went out before all its pieces: count it, and stop sending units early."""
        if session is not self._session:
            return
        self.stats.split_units += 1
        # Consumers see a gap in the numbers, so they wait for a keyframe after the broken unit.
        self.stats.units += 1
        if self.early_units:
            self.early_units = False
            log.warning(
                "%s: a unit that looked whole was not (its pictures vary in slices); units now "
                "go out when the next picture starts, one frame interval later",
                self.name,
            )

    def _on_unit(self, session: _Session, raw: _RawUnit) -> None:
        if session is not self._session or self.units.closed:
            return
        pts = self._timeline.map(raw.pts, raw.received)
        unit = AccessUnit(
            data=raw.data, keyframe=raw.keyframe, pts=pts, received=raw.received,
            number=self.stats.units + 1, session=session.number,
        )  # fmt: skip
        self.stats.units += 1
        self.stats.keyframes += raw.keyframe
        self.stats.bytes += len(raw.data)
        facts = raw.facts or self.facts
        if facts is not None:
            facts = self._meter.measure(unit, facts)
            if facts != self.facts:
                self.facts = facts
        if len(self._handover) >= _MAX_HANDOVER:
            self._handover.popleft()
            self.stats.dropped += 1
        self._handover.append(unit)
        if not self._handing_over:
            self._hand_over()

    def _hand_over(self) -> None:
        """Publish the oldest waiting unit; the next one waits for the next loop iteration.

        Units can arrive together: the demuxer hands over the IDR it read while probing with
        the unit after it. Published in one go, a waiting consumer would see only the last and
        miss the IDR; one iteration apart, it sees each (it wakes before the next is out).
        """
        if not self._handover or self.units.closed:
            self._handover.clear()
            self._handing_over = False
            return
        self.units.publish(self._handover.popleft())
        self._handing_over = True
        asyncio.get_running_loop().call_soon(self._hand_over)

    def _on_failed_attempt(self, session: _Session) -> None:
        if session is self._session:
            self.stats.failed_attempts += 1

    def _on_stall(self, session: _Session) -> None:
        if session is self._session:
            self.stats.stalls += 1


@dataclass(frozen=True, slots=True)
class _RawUnit:
    """What the worker hands to the loop: a unit before it gets its place on the timeline."""

    data: bytes
    keyframe: bool
    #: 90 kHz, straight from the demuxer; None if it gave none.
    pts: int | None
    received: float
    #: New facts when the parameter sets changed with this unit.
    facts: StreamFacts | None


class _Session:
    """One connection: opens the stream and demuxes it in a worker thread until told to stop."""

    def __init__(self, source: RtspSource, loop: asyncio.AbstractEventLoop, number: int) -> None:
        self.number = number
        self.units = 0
        self.done: asyncio.Future[str] = loop.create_future()
        self._source = source
        self._loop = loop
        self._stopped = threading.Event()
        self._url = source.url
        self._transport = source.transport
        self._timeouts = (source.connect_timeout, source.stall_timeout)
        self._thread = threading.Thread(
            target=self._work, name=f"{source.name}-{number}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        """Run `fn` on the loop, unless the session was stopped or the loop is gone."""
        if self._stopped.is_set():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while we were blocked
            self._loop.call_soon_threadsafe(fn, *args)

    def _finish(self, reason: str) -> None:
        def resolve() -> None:
            if not self.done.done():
                self.done.set_result(reason)

        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(resolve)

    # -- the worker thread ----------------------------------------------------------------------

    def _work(self) -> None:
        try:
            reason = self._demux()
        except Exception as exc:  # a bug must not leave the loop waiting forever
            log.exception("%s: worker failed", self._thread.name)
            reason = f"worker failed: {exc!r}"
        self._finish(reason)

    def _demux(self) -> str:
        source = self._source
        # H.264 without FFmpeg's parser (see the module docstring); any other codec with it,
        # which takes a second handshake once its codec is known.
        for parse in (False, True):
            started = time.monotonic()
            try:
                container = av.open(
                    self._url,
                    options=_demuxer_options(self._transport, self._timeouts[1], parse=parse),
                    timeout=self._timeouts,
                )
            except (av.FFmpegError, OSError) as exc:
                self._call(source._on_failed_attempt, self)
                # FFmpeg reports an interrupted RTSP handshake as invalid data: tell it by the
                # clock.
                if isinstance(exc, av.ExitError) or time.monotonic() - started >= self._timeouts[0]:
                    return f"connect failed: no answer within {self._timeouts[0]:g} s"
                return f"connect failed: {_describe(exc)}"
            try:
                if not container.streams.video:
                    return "connect failed: the stream has no video"
                stream = container.streams.video[0]
                if not parse and stream.codec_context.name != "h264":
                    continue  # closed below; opened again with the parser
                return self._read(container, stream)
            finally:
                with contextlib.suppress(av.FFmpegError, OSError):
                    container.close()
        raise AssertionError("unreachable: the second attempt parses")

    def _read(self, container: av.container.InputContainer, stream: av.VideoStream) -> str:
        source = self._source
        codec = stream.codec_context
        facts = probed = _probed_facts(codec.name, self._transport, stream)
        grouper = None
        if codec.name == "h264":
            assembler = AccessUnitAssembler(codec.extradata)
            grouper = _UnitGrouper(assembler, probed, early=source.early_units)
            facts = _with_parameter_sets(probed, assembler)
        self._call(source._on_playing, self, facts)
        to_90k = Fraction(stream.time_base or Fraction(1, CLOCK_RATE)) * CLOCK_RATE
        try:
            for packet in container.demux(stream):
                if self._stopped.is_set():
                    return "closed"
                if packet.size == 0:
                    continue  # the demuxer's flush packet at the end of the stream
                received = time.monotonic()
                stamp = packet.pts if packet.pts is not None else packet.dts
                pts = None if stamp is None else round(stamp * to_90k)
                if grouper is None:
                    units = [_RawUnit(bytes(packet), packet.is_keyframe, pts, received, None)]
                else:
                    split = grouper.add(bytes(packet), pts, received)
                    if split is None:
                        self._call(source._on_split_unit, self)
                        continue
                    units = split
                for raw in units:
                    self.units += 1
                    self._call(source._on_unit, self, raw)
        except (av.FFmpegError, OSError) as exc:
            # PyAV's read timeout interrupts (ExitError); FFmpeg's socket timeout (ETIMEDOUT)
            # may come first, on UDP always: both mean nothing arrived for `stall_timeout`.
            if isinstance(exc, av.ExitError) or exc.errno == errno.ETIMEDOUT:
                self._call(source._on_stall, self)
                return f"stalled: nothing received for {self._timeouts[1]:g} s"
            return f"connection lost: {_describe(exc)}"
        return "the stream ended"


class _UnitGrouper:
    """Joins the demuxer's pieces of H.264 (NAL units or fragments of one, each NAL unit's
    start with a 4-byte start code) into access units, in the worker (see the module docstring).
    """

    def __init__(self, assembler: AccessUnitAssembler, probed: StreamFacts, early: bool) -> None:
        self._assembler = assembler
        self._probed = probed
        #: Whether a unit may go out as soon as it looks whole (see `_whole`).
        self.early = early
        self._pieces: list[bytes] = []
        self._pts: int | None = None
        self._received = 0.0
        #: Slices (VCL NAL units) begun in the current unit.
        self._slices = 0
        #: The timestamp of the unit sent last: a piece with it came too late.
        self._sent_pts: int | None = None
        self._split_pts: int | None = None
        #: The largest piece so far that continues a NAL unit (a full fragment).
        self._full_fragment = 0
        #: Slices per picture, as the last whole pictures had (0: not known yet), and how many
        #: pictures in a row had that many.
        self._per_picture = 0
        self._agreeing = 0

    def add(self, piece: bytes, pts: int | None, received: float) -> list[_RawUnit] | None:
        """The units this piece completes (none, the one before it, or its own too); None if
        the piece is the first to come for a unit already sent (it was not whole: split)."""
        if pts is not None and pts == self._sent_pts and not self._pieces:
            self.early = False
            first, self._split_pts = self._split_pts != pts, pts
            return None if first else []  # the rest of it goes too, unreported
        out = []
        if self._pieces and pts != self._pts:  # (pieces without a pts never wait)
            self._learn()  # a new timestamp: the unit before is whole for sure
            out.append(self._flush())
        self._pieces.append(piece)
        self._pts, self._received = pts, received
        # A piece that starts a NAL unit is one whole (alone or aggregated) or a fragmentation
        # unit's first; others continue one. Fragments are full-size but the last, so a
        # continuing piece shorter than the largest ends its NAL unit; a starting one does if
        # it is shorter than a full first fragment (FFmpeg puts a start code and the NAL
        # header in front of the fragment's data: 5 bytes longer). A whole NAL unit as long or
        # longer is taken for a first fragment: its unit waits for the next timestamp.
        if piece.startswith(_START_CODE):
            nals = piece.split(_START_CODE)[1:]
            self._slices += sum(h264.nal_type(nal) in _SLICES for nal in nals if nal)
            ends_nal = len(piece) < self._full_fragment + 5
        else:
            ends_nal = len(piece) < self._full_fragment
            self._full_fragment = max(self._full_fragment, len(piece))
        if pts is None or (self.early and ends_nal and self._whole()):
            out.append(self._flush())
        return out

    def _whole(self) -> bool:
        """Whether the unit has all its slices, by the pictures before it (three in a row with
        as many slices), its last piece having ended a NAL unit."""
        return self._agreeing >= 3 and self._slices >= self._per_picture

    def _learn(self) -> None:
        if self._slices == self._per_picture:
            self._agreeing += 1
        else:
            self._per_picture, self._agreeing = self._slices, 1

    def _flush(self) -> _RawUnit:
        data, self._pieces = b"".join(self._pieces), []
        self._slices = 0
        self._sent_pts = self._pts
        unit = self._assembler.assemble(data)
        facts = None
        if unit.parameters_changed:
            facts = _with_parameter_sets(self._probed, self._assembler)
        return _RawUnit(unit.data, unit.idr, self._pts, self._received, facts)


_START_CODE = b"\x00\x00\x00\x01"
_SLICES = (h264.NalType.SLICE, h264.NalType.IDR)


def _demuxer_options(
    transport: Transport, stall_timeout: float, *, parse: bool = True
) -> dict[str, str]:
    """FFmpeg's rtsp demuxer tuned for latency: little probing, no reordering wait, and without
    `parse` no parser holding each picture until the next (see the module docstring).

    No `fflags=nobuffer`: it throws away the packets read while probing, and with them the IDR
    the server starts with, so a viewer would wait a whole GOP for the next one.
    """
    return {
        # `noparse` needs `nofillin`: without a parser FFmpeg cannot compute missing timestamps.
        **({} if parse else {"fflags": "+noparse+nofillin"}),
        "rtsp_transport": transport.value,
        # The SDP's sprop-parameter-sets already say what the stream is: probe little.
        "probesize": "32768",
        "analyzeduration": "1",
        # No frame rate estimate from the first frames (we measure it): probing ends with the
        # first picture, so the IDR comes out at once rather than in a burst of held frames.
        "fpsprobesize": "0",
        # UDP: hand packets on as they come instead of holding them to restore RTP order.
        "max_delay": "0",
        "reorder_queue_size": "0",
        # Socket I/O timeout (µs); PyAV's read timeout also covers UDP, this the TCP socket.
        "timeout": str(round(stall_timeout * 1_000_000)),
    }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, av.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    return str(exc) or type(exc).__name__


def _probed_facts(codec: str, transport: Transport, stream: av.VideoStream) -> StreamFacts:
    """What FFmpeg probed (worker thread: it reads the stream)."""
    rate = stream.average_rate or stream.guessed_rate
    return StreamFacts(
        codec=codec,
        transport=transport,
        width=stream.codec_context.width or None,
        height=stream.codec_context.height or None,
        frame_rate=float(rate) if rate else None,
    )


def _with_parameter_sets(facts: StreamFacts, assembler: AccessUnitAssembler) -> StreamFacts:
    """`facts` (probed) with what the parameter sets say, where known."""
    sps = assembler.sequence
    if sps is None:
        return facts
    pictures = assembler.pictures
    return replace(
        facts,
        profile=sps.profile, profile_idc=sps.profile_idc, constraints=sps.constraints,
        level_idc=sps.level_idc, level=sps.level, width=sps.width, height=sps.height,
        frame_rate=sps.frame_rate or facts.frame_rate, reorders=sps.may_reorder,
        max_num_reorder_frames=sps.max_num_reorder_frames,
        pic_order_cnt_type=sps.pic_order_cnt_type,
        slice_groups=max((p.slice_groups for p in pictures), default=None),
        redundant_pictures=any(p.redundant_pictures for p in pictures) if pictures else None,
        cabac=any(p.cabac for p in pictures) if pictures else None,
    )  # fmt: skip


class _Timeline:
    """Maps each connection's timestamps onto one increasing 90 kHz timeline that never runs
    ahead of the units' arrival by more than two frames."""

    def __init__(self) -> None:
        #: Timeline minus stream clock, for the current connection; None until it has a pts.
        self._offset: int | None = None
        self._last_raw: int | None = None
        self._wraps = 0
        self._last: int | None = None
        self._last_received = 0.0
        #: One frame on the 90 kHz clock, as measured (30 fps until then).
        self._step = CLOCK_RATE // 30

    def new_session(self) -> None:
        self._offset = None
        self._last_raw = None
        self._wraps = 0

    def map(self, raw: int | None, received: float) -> int:
        if raw is not None:
            raw += self._wraps << 32
            if self._last_raw is not None and raw < self._last_raw - (1 << 31):
                # RTP timestamps are 32 bits; FFmpeg unwraps them, but do not rely on it.
                self._wraps += 1
                raw += 1 << 32
        if raw is None or self._offset is None:
            # Nothing on the stream's clock to go by (a new connection, or FFmpeg gave no pts,
            # as it may for the first unit): continue by wall time, and at least one frame.
            out = 0
            if self._last is not None:
                wall = round((received - self._last_received) * CLOCK_RATE)
                out = self._last + max(self._step, wall)
            if raw is not None:
                self._offset = out - raw
        else:
            out = raw + self._offset
            assert self._last is not None
            by_wall = self._last + round((received - self._last_received) * CLOCK_RATE)
            if out > by_wall + 2 * self._step:
                # Ahead of the wall clock: the unit before was older than its arrival said (a
                # first IDR that took long to make, or sat in a buffer). Anchor again here, or
                # every later unit would look that much early.
                out = max(self._last + self._step, by_wall)
                self._offset = out - raw
            elif self._last_raw is not None and 0 < raw - self._last_raw < CLOCK_RATE:
                self._step = raw - self._last_raw
        if raw is not None:
            self._last_raw = raw
        self._last = out
        self._last_received = received
        return out


class _Meter:
    """Measures frame rate, keyframe interval and reordering from the units of one session."""

    def __init__(self) -> None:
        self._pts: deque[int] = deque(maxlen=_RATE_WINDOW)
        self._last_key: AccessUnit | None = None
        self._reordered = False

    def measure(self, unit: AccessUnit, facts: StreamFacts) -> StreamFacts:
        if self._pts and unit.pts < self._pts[-1]:
            self._reordered = True
        self._pts.append(unit.pts)
        changes: dict[str, object] = {}
        if self._reordered and not facts.reorders:
            changes["reorders"] = True
        if unit.keyframe:
            if self._last_key is not None:
                changes["keyframe_interval_s"] = (unit.pts - self._last_key.pts) / CLOCK_RATE
                changes["keyframe_interval_units"] = unit.number - self._last_key.number
            self._last_key = unit
        if len(self._pts) >= 3 and (unit.keyframe or len(self._pts) % 15 == 0):
            # The median step ignores the odd late or lost unit.
            step = statistics.median(b - a for a, b in itertools.pairwise(self._pts))
            if step > 0 and not self._reordered:
                changes["frame_rate"] = round(CLOCK_RATE / step, 2)
        return replace(facts, **changes) if changes else facts  # type: ignore[arg-type]
