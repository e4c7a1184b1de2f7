/**
 * The live view over WebRTC: H.264 video from the server's encoder (docs/webrtc-media.md),
 * shown in a `<video playsinline muted autoplay>`. The peer connection is kept up by
 * services/peer-connector.js (signaling socket, then the data channel; reconnection).
 *
 * - Each connection gets one recvonly video transceiver (H.264 first where
 *   `setCodecPreferences` exists, or only the `codec` asked for) and, with `channels`, the
 *   data-channel protocol's channels. A connection's stream is shown once it is the current one
 *   (a renewal over the data channel keeps the old picture until the new connection is up).
 * - Playout: the receiver's `jitterBufferTarget` is 0 (older Chromium: `playoutDelayHint`), so
 *   the browser holds no frame longer than its jitter estimate needs; the source is live.
 * - Frames: `requestVideoFrameCallback` gives one callback per frame presented; each becomes a
 *   `frame` event with `shownAt` = the frame's expected display time and the stamp read from the
 *   video's pixels (only the top band is drawn: lib/framestamp.js). A video that holds every
 *   frame back about a frame interval (a Chromium state, lib/live-quality.js
 *   `HeldFrameDetector`) gets its track attached again.
 * - Reconnection: the connector's `retrying` is the transport's (with its reason in
 *   `lastError`). No frame for `restartAfterMs` asks the connector for a new session; so does
 *   `setTier()`. Nothing older than the newest frame is ever waited for.
 * - Quality: `getStats()` once a second (fps, bitrate, RTT, loss, jitter-buffer delay), graded
 *   with the latency from the stamps by lib/live-quality.js; and the path the media arrives by
 *   (`path`: direct, or through a TURN relay), from the candidate pair receiving the bytes.
 */

import { readFrameStampFrom } from "../lib/framestamp.js";
import {
  HeldFrameDetector,
  carryingPath,
  classifyQuality,
  codecPreferences,
  linkFigures,
  mediaPath,
} from "../lib/live-quality.js";
import { LiveTransport } from "./live-transport.js";
import { PeerConnector } from "./peer-connector.js";

/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {import('./live-transport.js').LiveQuality} LiveQuality */
/** @typedef {import('./peer-connector.js').PeerChannels} PeerChannels */
/** @typedef {import('../lib/live-quality.js').StatsSnapshot} StatsSnapshot */
/** @typedef {import('../lib/live-quality.js').LinkFigures} LinkFigures */
/** @typedef {import('../lib/live-quality.js').VideoCodec} VideoCodec */

/**
 * A receiver's playout controls, either of which a browser may lack: `jitterBufferTarget` (ms,
 * the standard) or Chromium's older `playoutDelayHint` (seconds).
 *
 * @typedef {{jitterBufferTarget?: number | null, playoutDelayHint?: number | null}} PlayoutReceiver
 */

/**
 * @typedef {object} WebRtcOptions
 * @property {RTCIceTransportPolicy} [iceTransportPolicy] "relay" forces TURN (for tests)
 * @property {"full" | "reduced"} [tier] the tier to ask for (the server's choice when absent)
 * @property {VideoCodec | null} [codec] offer only this codec (and rtx); null: H.264 first
 * @property {number | null} [jitterBufferTarget] ms the receiver should buffer (0: as little as
 *   it can); null leaves the browser's default (for benchmarks)
 * @property {number} [stallAfterMs] connected, no frame this long: `stalled`
 * @property {number} [restartAfterMs] no frame this long: a new session
 * @property {number} [disconnectGraceMs] ICE `disconnected` this long counts as failed
 * @property {PeerChannels | null} [channels] opens the data-channel protocol's channels on each
 *   new peer connection (services/channel-link.js); with them the signaling socket is let go
 *   once the channel is open, and new sessions are negotiated over it
 */

/** @type {LinkFigures} */
const NO_FIGURES = { fps: null, bitrateBps: null, rttMs: null, loss: null, jitterBufferMs: null };

export class WebRtcTransport extends LiveTransport {
  /** Whether this browser can do WebRTC at all. */
  static get supported() {
    return typeof globalThis.RTCPeerConnection === "function";
  }

  #video = document.createElement("video");
  /** Times the video was attached again (`reattachVideo`). */
  reattachments = 0;
  #peer;
  /** The video streams of connections made, shown when their connection is the current one. */
  /** @type {WeakMap<RTCPeerConnection, MediaStream>} */
  #streams = new WeakMap();
  /** @type {WeakMap<RTCPeerConnection, RTCRtpReceiver>} */
  #receivers = new WeakMap();
  /** @type {string | null} */
  #telescopeId = null;
  /** @type {string | null} */
  #shown = null;
  /** Bumped for every stream shown and on stop, so frame callbacks of an old one do nothing. */
  #run = 0;
  #hasFrame = false;
  #sessionAt = 0;
  /** @type {ReturnType<typeof setInterval> | null} */
  #ticker = null;
  /** @type {StatsSnapshot | null} */
  #lastStats = null;
  /** @type {LinkFigures} */
  #figures = NO_FIGURES;
  /** How the media flows now, from the selected candidate pair; null until known. */
  path = /** @type {import('../lib/live-quality.js').MediaPath | null} */ (null);

  /**
   * @param {ApiClient} api
   * @param {WebRtcOptions} [options]
   */
  constructor(
    api,
    {
      iceTransportPolicy = "all",
      tier,
      codec = null,
      jitterBufferTarget = 0,
      stallAfterMs = 4_000,
      restartAfterMs = 20_000,
      disconnectGraceMs = 2_000,
      channels = null,
    } = {},
  ) {
    super();
    this.api = api;
    this.codec = codec;
    this.jitterBufferTarget = jitterBufferTarget;
    this.stallAfterMs = stallAfterMs;
    this.restartAfterMs = restartAfterMs;
    const video = this.#video;
    video.dataset.testid = "live-video";
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.setAttribute("playsinline", "");
    video.setAttribute("muted", "");
    video.setAttribute("autoplay", "");
    video.disablePictureInPicture = true;
    this.#peer = new PeerConnector(api, {
      prepare: (pc) => this.#prepare(pc),
      channels,
      iceTransportPolicy,
      tier,
      disconnectGraceMs,
    });
    this.#peer.addEventListener("peer", (event) => {
      this.#current(/** @type {CustomEvent<RTCPeerConnection>} */ (event).detail);
    });
    this.#peer.addEventListener("statechange", () => {
      if (!this.#telescopeId) return;
      const to = this.#peer.state;
      if (to === "retrying") {
        this.#run += 1; // a late frame of the closed connection is no picture of the next
        this.lastError = this.#peer.lastError;
        this.setState("retrying");
      } else if (to === "connecting" && this.state === "retrying") {
        this.#sessionAt = performance.now();
        this.setState("connecting");
      }
    });
  }

  /** @override */
  get name() {
    return "WebRTC";
  }

  /** @override */
  get element() {
    return this.#video;
  }

  /** @override */
  get frameSize() {
    return this.#hasFrame
      ? { width: this.#video.videoWidth, height: this.#video.videoHeight }
      : { width: 0, height: 0 };
  }

  /** The connector that keeps the peer connection (its `signaling` reports, for the UI). */
  get connector() {
    return this.#peer;
  }

  /** The signaling socket's state, for the UI and tests (closed once the session detached). */
  get signalingState() {
    return this.#peer.signalingState;
  }

  /** What carries signaling for the session now: the socket, its data channel, or neither. */
  get signalingVia() {
    return this.#peer.via;
  }

  /** Sessions made over the data channel since the page loaded (for tests). */
  get renewals() {
    return this.#peer.renewals;
  }

  /** The server's session id, for the UI and the logs. */
  get sessionId() {
    return this.#peer.sessionId;
  }

  /** The server's last `stats` message (while the socket carries the session). */
  get serverStats() {
    return this.#peer.serverStats;
  }

  /** The tier asked for (the server's choice when undefined). */
  get tier() {
    return this.#peer.tier;
  }

  /** The video receiver of the session now, or null without one (for tests). */
  get receiver() {
    const pc = this.#peer.pc;
    return (pc && this.#receivers.get(pc)) ?? null;
  }

  /** The peer connection's state, or null without one. */
  get connectionState() {
    return this.#peer.pc?.connectionState ?? null;
  }

  /**
   * @override
   * @param {string} telescopeId
   */
  start(telescopeId) {
    const other = telescopeId !== this.#shown;
    this.stop();
    if (other) {
      this.#video.srcObject = null;
      this.#hasFrame = false;
    }
    this.#telescopeId = telescopeId;
    this.#shown = telescopeId;
    this.#sessionAt = performance.now();
    this.#ticker = setInterval(() => void this.#tick(), 1_000);
    this.setState("connecting");
    this.#peer.start(telescopeId);
  }

  /** @override */
  stop() {
    this.#run += 1;
    this.#telescopeId = null;
    if (this.#ticker) clearInterval(this.#ticker);
    this.#ticker = null;
    this.#peer.stop();
    this.#lastStats = null;
    this.#figures = NO_FIGURES;
    this.path = null;
    this.setState("idle");
  }

  /** Stop, and drop the last picture too: this page may not show the telescope any more. */
  clear() {
    this.stop();
    this.#shown = null;
    this.#hasFrame = false;
    this.#video.srcObject = null;
  }

  /**
   * Watch another tier: a new session, over the data channel when it is open (the picture goes
   * on until the new one plays), else over the signaling socket.
   *
   * @param {"full" | "reduced" | undefined} tier
   */
  setTier(tier) {
    if (tier === this.#peer.tier) return;
    this.#peer.tier = tier;
    if (this.#telescopeId) this.#peer.renew(`tier ${tier ?? "default"} asked for`);
  }

  /**
   * @override
   * @param {number} [now]
   * @returns {LiveQuality}
   */
  connectionQuality(now = performance.now()) {
    const base = super.connectionQuality(now);
    const link = this.#figures;
    return {
      ...base,
      level: classifyQuality({
        latencyMs: base.latencyMs,
        loss: link.loss,
        fps: base.fps,
        sourceFps: base.sourceFps,
      }),
      bitrateBps: link.bitrateBps,
      rttMs: link.rttMs,
      loss: link.loss,
      jitterBufferMs: link.jitterBufferMs,
    };
  }

  /** @override */
  readFrameStamp() {
    const { width, height } = this.frameSize;
    return readFrameStampFrom(this.#video, width, height);
  }

  // -- sessions -------------------------------------------------------------------------------

  /**
   * A new connection, before its offer: one receive-only video transceiver.
   *
   * @param {RTCPeerConnection} pc
   */
  #prepare(pc) {
    const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
    preferCodecs(transceiver, this.codec);
    this.#receivers.set(pc, transceiver.receiver);
    if (this.jitterBufferTarget !== null) {
      setPlayoutDelay(transceiver.receiver, this.jitterBufferTarget);
    }
    pc.addEventListener("track", (event) => {
      this.#streams.set(pc, event.streams[0] ?? new MediaStream([event.track]));
      if (pc === this.#peer.pc) this.#show(pc);
    });
  }

  /**
   * A connection became the current one (a first session, or a renewal that connected).
   *
   * @param {RTCPeerConnection} pc
   */
  #current(pc) {
    this.#lastStats = null;
    this.#figures = NO_FIGURES;
    if (this.#streams.has(pc)) this.#show(pc);
    else this.#sessionAt = performance.now();
  }

  /** @param {RTCPeerConnection} pc */
  #show(pc) {
    const stream = this.#streams.get(pc);
    if (!stream || !this.#telescopeId) return;
    const run = ++this.#run;
    this.#video.srcObject = stream;
    void this.#video.play().catch(() => undefined); // muted autoplay: allowed everywhere
    this.#watchFrames(run);
  }

  // -- frames and statistics ------------------------------------------------------------------

  /** @param {number} run */
  #watchFrames(run) {
    const video = this.#video;
    /** @type {VideoFrameRequestCallback} */
    const onFrame = (now, metadata) => {
      if (run !== this.#run) return;
      this.#hasFrame = true;
      this.lastError = null;
      const stamp = readFrameStampFrom(video, metadata.width, metadata.height);
      this.frameShown(stamp, metadata.expectedDisplayTime ?? now, metadata.rtpTimestamp ?? null);
      const { receiveTime, presentationTime, processingDuration } = metadata;
      const frame = { receiveTime: receiveTime ?? 0, presentationTime, processingDuration };
      if (held.add(frame)) {
        console.info("webrtc: frames held back a frame interval; attaching the video again");
        this.reattachVideo();
      }
      video.requestVideoFrameCallback(onFrame);
    };
    const held = new HeldFrameDetector();
    video.requestVideoFrameCallback(onFrame);
  }

  /**
   * Attach the playing track to the video element again: a new player, the same stream. The
   * frame callbacks go on (they belong to the element).
   */
  reattachVideo() {
    const current = this.#video.srcObject;
    if (!(current instanceof MediaStream)) return;
    this.reattachments += 1;
    this.#video.srcObject = new MediaStream(current.getTracks());
    void this.#video.play().catch(() => undefined);
  }

  async #tick() {
    if (!this.#telescopeId) return;
    const now = performance.now();
    const last = Math.max(this.lastFrameAt ?? 0, this.#sessionAt);
    if (this.state === "playing" && now - last > this.stallAfterMs) this.setState("stalled");
    const waiting = this.state === "stalled" || this.state === "connecting";
    if (waiting && now - last > this.restartAfterMs) {
      this.#sessionAt = now; // one renewal per silence of `restartAfterMs`
      this.#peer.renew(`no frame for ${Math.round((now - last) / 1000)} s`);
    }
    const pc = this.#peer.pc;
    if (!pc || pc.connectionState !== "connected") return;
    try {
      const snapshot = snapshotOf(await pc.getStats());
      if (pc !== this.#peer.pc) return;
      this.#figures = linkFigures(this.#lastStats, snapshot);
      this.path = carryingPath(this.#lastStats, snapshot);
      this.#lastStats = snapshot;
    } catch {
      // a closed connection mid-call: the next tick sees the new one
    }
  }
}

/**
 * Put H.264 first (the server's first choice; VP8 only without H.264), or offer only `only`,
 * where the browser lets us choose.
 *
 * @param {RTCRtpTransceiver} transceiver
 * @param {VideoCodec | null} only
 */
function preferCodecs(transceiver, only) {
  const codecs = globalThis.RTCRtpReceiver?.getCapabilities?.("video")?.codecs;
  if (!codecs || typeof transceiver.setCodecPreferences !== "function") return;
  const ordered = codecPreferences(codecs, only);
  if (!ordered.length) return; // the browser cannot receive it: its own list, the server picks
  try {
    transceiver.setCodecPreferences(ordered);
  } catch {
    // a browser that rejects the list negotiates with its own order: the server still picks H.264
  }
}

/**
 * Ask the receiver to hold frames no longer than `ms` (0: play each as soon as it can).
 *
 * @param {PlayoutReceiver} receiver
 * @param {number} ms
 */
function setPlayoutDelay(receiver, ms) {
  try {
    if ("jitterBufferTarget" in receiver) receiver.jitterBufferTarget = ms;
    else if ("playoutDelayHint" in receiver) receiver.playoutDelayHint = ms / 1000;
  } catch {
    // out of the browser's range: its default buffering
  }
}

/**
 * The counters we use, from a `getStats()` report: inbound video RTP and the selected pair.
 *
 * @param {RTCStatsReport} report
 * @returns {StatsSnapshot}
 */
function snapshotOf(report) {
  /** @type {StatsSnapshot} */
  const snapshot = { timestamp: performance.timeOrigin + performance.now() };
  /** @type {string | undefined} */
  let pairId;
  /** @type {Map<string, any>} */
  const pairs = new Map();
  report.forEach((/** @type {any} */ s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      snapshot.timestamp = s.timestamp;
      snapshot.bytesReceived = s.bytesReceived;
      snapshot.packetsReceived = s.packetsReceived;
      snapshot.packetsLost = s.packetsLost;
      snapshot.framesDecoded = s.framesDecoded;
      snapshot.framesPerSecond = s.framesPerSecond;
      snapshot.jitterBufferDelay = s.jitterBufferDelay;
      snapshot.jitterBufferEmittedCount = s.jitterBufferEmittedCount;
    } else if (s.type === "transport" && s.selectedCandidatePairId) {
      pairId = s.selectedCandidatePairId;
    } else if (s.type === "candidate-pair") {
      pairs.set(s.id, s);
    }
  });
  const pair =
    (pairId && pairs.get(pairId)) ||
    [...pairs.values()].find((p) => p.nominated && p.state === "succeeded");
  if (pair && typeof pair.currentRoundTripTime === "number") {
    snapshot.currentRoundTripTime = pair.currentRoundTripTime;
  }
  /** @param {any} p */
  const pathOf = (p) =>
    mediaPath(
      [p.localCandidateId, p.remoteCandidateId].map(
        (id) => /** @type {any} */ (report.get(id))?.candidateType,
      ),
    );
  const path = pair ? pathOf(pair) : null;
  if (path) snapshot.path = path;
  /** @type {Record<string, import("../lib/live-quality.js").PairBytes>} */
  const carried = {};
  for (const [id, p] of pairs) {
    if (typeof p.bytesReceived === "number") {
      carried[id] = { bytesReceived: p.bytesReceived, path: pathOf(p) };
    }
  }
  snapshot.pairs = carried;
  return snapshot;
}
