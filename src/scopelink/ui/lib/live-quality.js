/**
 * Pure decisions of the live view, kept out of the services so they can be tested under Node:
 * which transport to use (the WebRTC feature flag and its overrides), which video codec to offer,
 * when to give up on WebRTC and fall back to MJPEG, how to turn two `getStats()` snapshots into
 * figures, and how to grade the connection green / amber / red (thresholds documented in
 * docs/ui.md).
 */

/** @typedef {"webrtc" | "mjpeg"} TransportKind */
/** @typedef {"h264" | "vp8"} VideoCodec */
/** @typedef {"green" | "amber" | "red" | "unknown"} QualityLevel */

/**
 * @param {string | null | undefined} value
 * @returns {TransportKind | null}
 */
export function parseTransportKind(value) {
  const v = value?.trim().toLowerCase();
  return v === "webrtc" || v === "mjpeg" ? v : null;
}

/**
 * Which transport to use. The most specific wish wins: the URL parameter (`?transport=`), then the
 * user's remembered toggle, then the deployment default (`/api/session.webrtc_default`, true when
 * the server does not say). WebRTC is only chosen when the browser has it.
 *
 * @param {{supported: boolean, urlParam?: string | null, stored?: string | null,
 *          deploymentDefault?: boolean | null}} input
 * @returns {TransportKind}
 */
export function chooseTransport({ supported, urlParam = null, stored = null, deploymentDefault }) {
  const wish =
    parseTransportKind(urlParam) ??
    parseTransportKind(stored) ??
    (deploymentDefault === false ? "mjpeg" : "webrtc");
  return wish === "webrtc" && supported ? "webrtc" : "mjpeg";
}

/**
 * The MIME type of each codec the page can ask for.
 *
 * @type {Readonly<Record<VideoCodec, string>>}
 */
const CODEC_MIME = { h264: "video/h264", vp8: "video/vp8" };

/**
 * @param {string | null | undefined} value `?codec=`
 * @returns {VideoCodec | null}
 */
export function parseVideoCodec(value) {
  const v = value?.trim().toLowerCase();
  return v === "h264" || v === "vp8" ? v : null;
}

/**
 * @param {string | null | undefined} value `?tier=`
 * @returns {"full" | "reduced" | undefined} the tier to ask for; undefined: the server's choice
 */
export function parseTier(value) {
  const v = value?.trim().toLowerCase();
  return v === "full" || v === "reduced" ? v : undefined;
}

/**
 * The receive codecs to offer, for `setCodecPreferences`: with `only`, just that codec and its
 * retransmission (rtx) entries; without, H.264 first (the server's codec) and the rest after.
 * An empty list means the browser cannot receive `only` at all.
 *
 * @template {{mimeType: string}} C
 * @param {readonly C[]} codecs what the browser can receive (`RTCRtpReceiver.getCapabilities`)
 * @param {VideoCodec | null} only
 * @returns {C[]}
 */
export function codecPreferences(codecs, only) {
  const mime = (/** @type {C} */ c) => c.mimeType.toLowerCase();
  if (only) {
    const chosen = codecs.filter((c) => mime(c) === CODEC_MIME[only]);
    return chosen.length ? [...chosen, ...codecs.filter((c) => mime(c) === "video/rtx")] : [];
  }
  const first = codecs.filter((c) => mime(c) === CODEC_MIME.h264);
  return [...first, ...codecs.filter((c) => mime(c) !== CODEC_MIME.h264)];
}

/**
 * Whether WebRTC has had long enough: it has been trying (`connecting` or `retrying`, no picture)
 * for `afterMs` without a frame. `stalled` (connected, the source is just slow) is no reason:
 * MJPEG would show the same silence.
 *
 * @param {{state: string, since: number, now: number, afterMs?: number}} input
 *   `since`: when it started trying, or showed its last frame (ms)
 * @returns {boolean}
 */
export function shouldFallBack({ state, since, now, afterMs = 4_000 }) {
  if (state !== "connecting" && state !== "retrying") return false;
  return now - since >= afterMs;
}

/**
 * The counters of one `getStats()` call that matter here (inbound video RTP and the selected
 * candidate pair), all optional because browsers differ.
 *
 * @typedef {object} StatsSnapshot
 * @property {number} timestamp ms
 * @property {number} [bytesReceived]
 * @property {number} [packetsReceived]
 * @property {number} [packetsLost]
 * @property {number} [framesDecoded]
 * @property {number} [framesPerSecond]
 * @property {number} [jitterBufferDelay] seconds, cumulative
 * @property {number} [jitterBufferEmittedCount]
 * @property {number} [currentRoundTripTime] seconds
 * @property {MediaPath} [path] the path of the pair this end selected (where it sends)
 * @property {Record<string, PairBytes>} [pairs] every candidate pair, by its stats id
 */

/**
 * @typedef {object} PairBytes
 * @property {number} bytesReceived
 * @property {MediaPath | null} path
 */

/**
 * How the media flows: `direct` (host, server-reflexive or peer-reflexive candidates on both
 * ends: peer to peer, through NATs at most) or `relay` (a TURN server on either end).
 *
 * @typedef {"direct" | "relay"} MediaPath
 */

/**
 * The path of a candidate pair from its two candidates' types (`candidateType` of the local and
 * the remote candidate in `getStats()`); null while either is unknown.
 *
 * @param {readonly (string | undefined)[]} types
 * @returns {MediaPath | null}
 */
export function mediaPath(types) {
  if (types.includes("relay")) return "relay";
  return types.length > 0 && types.every((t) => typeof t === "string") ? "direct" : null;
}

/**
 * The path the media arrives by: that of the candidate pair whose received bytes grew most since
 * the previous snapshot. The pair this end selected says only where it sends; the far end may
 * still send on another (an ICE agent that missed a later nomination keeps sending through the
 * relay it nominated first). Without a previous snapshot, or when nothing arrived, the selected
 * pair's path; null when unknown.
 *
 * @param {StatsSnapshot | null} previous
 * @param {StatsSnapshot} current
 * @returns {MediaPath | null}
 */
export function carryingPath(previous, current) {
  let best = null;
  let most = 0;
  for (const [id, pair] of Object.entries(current.pairs ?? {})) {
    const grew = pair.bytesReceived - (previous?.pairs?.[id]?.bytesReceived ?? 0);
    if (previous && grew > most) {
      most = grew;
      best = pair.path;
    }
  }
  return best ?? current.path ?? null;
}

/**
 * @typedef {object} LinkFigures
 * @property {number | null} fps frames decoded per second
 * @property {number | null} bitrateBps
 * @property {number | null} rttMs
 * @property {number | null} loss fraction of packets lost over the interval, 0–1
 * @property {number | null} jitterBufferMs mean jitter-buffer delay over the interval
 */

/**
 * @param {number | undefined} a
 * @param {number | undefined} b
 * @returns {number | null}
 */
function delta(a, b) {
  return a === undefined || b === undefined ? null : b - a;
}

/**
 * Figures over the interval between two snapshots (the first may be null: then rates are null).
 *
 * @param {StatsSnapshot | null} previous
 * @param {StatsSnapshot} current
 * @returns {LinkFigures}
 */
export function linkFigures(previous, current) {
  const rttMs =
    current.currentRoundTripTime === undefined ? null : current.currentRoundTripTime * 1000;
  if (!previous || current.timestamp <= previous.timestamp) {
    return {
      fps: current.framesPerSecond ?? null,
      bitrateBps: null,
      rttMs,
      loss: null,
      jitterBufferMs: null,
    };
  }
  const seconds = (current.timestamp - previous.timestamp) / 1000;
  const bytes = delta(previous.bytesReceived, current.bytesReceived);
  const frames = delta(previous.framesDecoded, current.framesDecoded);
  const received = delta(previous.packetsReceived, current.packetsReceived);
  const lost = delta(previous.packetsLost, current.packetsLost);
  const bufferDelay = delta(previous.jitterBufferDelay, current.jitterBufferDelay);
  const emitted = delta(previous.jitterBufferEmittedCount, current.jitterBufferEmittedCount);
  let loss = null;
  if (received !== null && lost !== null) {
    const total = received + Math.max(0, lost);
    loss = total > 0 ? Math.max(0, lost) / total : 0;
  }
  return {
    fps: frames !== null ? frames / seconds : (current.framesPerSecond ?? null),
    bitrateBps: bytes !== null ? (bytes * 8) / seconds : null,
    rttMs,
    loss,
    jitterBufferMs: bufferDelay !== null && emitted ? (bufferDelay / emitted) * 1000 : null,
  };
}

/** The thresholds of the indicator (docs/ui.md, "Connection quality"). */
export const QUALITY_THRESHOLDS = Object.freeze({
  green: Object.freeze({ latencyMs: 150, loss: 0.02, fpsRatio: 0.8 }),
  red: Object.freeze({ latencyMs: 500, loss: 0.1, fpsRatio: 0.4 }),
});

/**
 * Grade the connection. Each figure may be unknown (null) and is then left out; with nothing
 * known the grade is `unknown`. Red when any known figure is red; green when every known figure
 * is green; amber otherwise.
 *
 * @param {{latencyMs?: number | null, loss?: number | null, fps?: number | null,
 *          sourceFps?: number | null}} figures
 * @returns {QualityLevel}
 */
export function classifyQuality({ latencyMs = null, loss = null, fps = null, sourceFps = null }) {
  const { green, red } = QUALITY_THRESHOLDS;
  const ratio = fps !== null && sourceFps ? fps / sourceFps : null;
  /** @type {boolean[]} */
  const isRed = [];
  /** @type {boolean[]} */
  const isGreen = [];
  if (latencyMs !== null) {
    isRed.push(latencyMs > red.latencyMs);
    isGreen.push(latencyMs < green.latencyMs);
  }
  if (loss !== null) {
    isRed.push(loss > red.loss);
    isGreen.push(loss < green.loss);
  }
  if (ratio !== null) {
    isRed.push(ratio < red.fpsRatio);
    isGreen.push(ratio >= green.fpsRatio);
  }
  if (isRed.length === 0) return "unknown";
  if (isRed.some(Boolean)) return "red";
  return isGreen.every(Boolean) ? "green" : "amber";
}

/**
 * The source's frame rate, from the stamps of frames shown: frame numbers advanced over emit
 * time passed (so frames the viewer dropped still count). Null with fewer than two stamps.
 *
 * @param {readonly {frame: number, emitMs: number}[]} stamps oldest first
 * @returns {number | null}
 */
export function sourceFps(stamps) {
  if (stamps.length < 2) return null;
  const first = stamps[0];
  const last = stamps[stamps.length - 1];
  const ms = last.emitMs - first.emitMs;
  const frames = last.frame - first.frame;
  return ms > 0 && frames > 0 ? (frames * 1000) / ms : null;
}

/**
 * One presented WebRTC frame as `requestVideoFrameCallback` describes it (ms on the page's
 * clock; `processingDuration` in seconds, as the metadata gives it).
 *
 * @typedef {object} PresentedFrame
 * @property {number} receiveTime when its last packet arrived
 * @property {number} presentationTime when it was handed to the compositor
 * @property {number} [processingDuration] receipt to decoded, seconds
 */

/**
 * Notices a video element that holds every decoded frame back by about a frame interval.
 *
 * Chromium sometimes starts a WebRTC `<video>` in a state where each decoded frame waits about
 * one frame interval before it is presented, and some are skipped: measured on 1 session in 6,
 * 104–112 ms from receipt to presentation at 10 fps instead of 15–32, with decoding done in
 * 11 ms (docs/webrtc-media.md). Attaching the same track to the element again ends it. `add()`
 * says when to do that: the median hold (receipt to presentation, less decoding) over the last
 * `window` frames is above `minHoldMs` and above half the frame interval; at most once per
 * `cooldownMs`, and `maxTimes` per session. Frames of the first `settleMs` are not judged: the
 * first frames of a session are often held longer while playback starts (one re-attach for
 * nothing in 8 sessions at 30 fps without this).
 */
export class HeldFrameDetector {
  /** @type {number[]} */
  #held = [];
  /** @type {number[]} */
  #intervals = [];
  /** @type {number | null} */
  #lastReceive = null;
  /** @type {number | null} */
  #lastAction = null;
  /** @type {number | null} */
  #firstReceive = null;
  times = 0;

  constructor({
    window = 20,
    minHoldMs = 50,
    cooldownMs = 30_000,
    maxTimes = 3,
    settleMs = 3_000,
  } = {}) {
    this.window = window;
    this.minHoldMs = minHoldMs;
    this.cooldownMs = cooldownMs;
    this.maxTimes = maxTimes;
    this.settleMs = settleMs;
  }

  /**
   * @param {PresentedFrame} frame
   * @returns {boolean} true: re-attach the video now
   */
  add(frame) {
    const { receiveTime, presentationTime } = frame;
    if (!(receiveTime > 0) || !(presentationTime > 0)) return false;
    this.#firstReceive ??= receiveTime;
    if (receiveTime - this.#firstReceive < this.settleMs) return false;
    if (this.#lastReceive !== null && receiveTime > this.#lastReceive) {
      push(this.#intervals, receiveTime - this.#lastReceive, this.window);
    }
    this.#lastReceive = receiveTime;
    const decoding = (frame.processingDuration ?? 0) * 1000;
    push(this.#held, presentationTime - receiveTime - decoding, this.window);
    if (this.#held.length < this.window || this.#intervals.length < this.window - 1) return false;
    if (this.times >= this.maxTimes) return false;
    if (this.#lastAction !== null && presentationTime - this.#lastAction < this.cooldownMs) {
      return false;
    }
    const held = median(this.#held);
    if (held <= this.minHoldMs || held <= median(this.#intervals) / 2) return false;
    this.times += 1;
    this.#lastAction = presentationTime;
    this.#held = [];
    return true;
  }
}

/**
 * @param {number[]} values
 * @param {number} value
 * @param {number} keep
 */
function push(values, value, keep) {
  values.push(value);
  if (values.length > keep) values.shift();
}

/** @param {readonly number[]} values */
function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
