/**
 * What every live-view transport does, whatever carries the pictures: MJPEG today
 * (`mjpeg.js`), WebRTC next (`webrtc.js`). The live view talks only to this interface, so adding a
 * transport, or falling back from one to another, changes no view code.
 *
 * A transport owns one element that shows the pictures (`element`: a canvas for MJPEG, a video
 * for WebRTC), measures the frame rate from frames actually shown, and can read the frame stamp
 * (docs/frame-stamp.md) of the frame shown now, for latency measurements.
 *
 * States (the same machine for every transport):
 * - `idle`: not started, or stopped.
 * - `connecting`: asking for a stream; no picture yet.
 * - `playing`: frames arrive.
 * - `stalled`: connected, but no frame for a while (the telescope is slow, busy, or gone).
 * - `retrying`: the stream failed or ended; waiting (with backoff) before connecting again.
 *
 * Events: `statechange` ({from, to}), `frame` (FrameInfo, once per frame shown).
 */

import { readFrameStampFrom } from "../lib/framestamp.js";
import { FrameRateMeter } from "../lib/frame-rate.js";
import { classifyQuality, sourceFps } from "../lib/live-quality.js";
import { StateMachine } from "../lib/state-machine.js";

/** @typedef {"idle" | "connecting" | "playing" | "stalled" | "retrying"} LiveState */
/** @typedef {import('../lib/framestamp.js').FrameStamp} FrameStamp */

/**
 * How good the picture is now (docs/ui.md, "Connection quality"). Figures a transport cannot
 * know are null (MJPEG has no RTT, loss or jitter buffer).
 *
 * @typedef {object} LiveQuality
 * @property {import('../lib/live-quality.js').QualityLevel} level
 * @property {number | null} fps frames shown per second
 * @property {number | null} sourceFps the source's rate, from the stamps' frame numbers
 * @property {number | null} latencyMs median end-to-end latency of recent frames (stamp → shown)
 * @property {number | null} bitrateBps
 * @property {number | null} rttMs
 * @property {number | null} loss 0–1
 * @property {number | null} jitterBufferMs
 */

/** Recent frames looked at for latency and the source's frame rate. */
const QUALITY_WINDOW = 30;

/**
 * @typedef {object} FrameInfo
 * @property {number} seq frames shown since start, from 1
 * @property {number} width
 * @property {number} height
 * @property {number} shownAt when it was drawn (ms, `performance.now()`)
 * @property {FrameStamp | null} stamp the stamp the server sent alongside, when it did
 * @property {number | null} rtpTimestamp the frame's RTP timestamp (WebRTC), else null
 */

/** @type {Readonly<Record<LiveState, readonly LiveState[]>>} */
export const LIVE_TRANSITIONS = {
  idle: ["connecting"],
  connecting: ["playing", "retrying", "idle"],
  playing: ["stalled", "retrying", "idle"],
  stalled: ["playing", "retrying", "idle"],
  retrying: ["connecting", "idle"],
};

/** @abstract */
export class LiveTransport extends EventTarget {
  #machine = new StateMachine(LIVE_TRANSITIONS, /** @type {LiveState} */ ("idle"));
  #meter = new FrameRateMeter();
  #seq = 0;
  /**
   * Recent stamps and their latencies, oldest first.
   * @type {{frame: number, emitMs: number, latencyMs: number}[]}
   */
  #recent = [];
  /** Why the last attempt failed, for the UI; null while fine. */
  lastError = /** @type {string | null} */ (null);

  /** A short name for the UI, e.g. "MJPEG". */
  get name() {
    return "live";
  }

  /** @returns {LiveState} */
  get state() {
    return this.#machine.state;
  }

  /**
   * What the live view puts on the page: the picture element, or a container of several.
   *
   * @returns {HTMLElement}
   */
  get view() {
    return this.element;
  }

  /**
   * The connection quality now: frame rate and latency from frames shown; transports that know
   * more (WebRTC's `getStats()`) add to it.
   *
   * @param {number} [now]
   * @returns {LiveQuality}
   */
  connectionQuality(now = performance.now()) {
    const fps = this.lastFrameAt === null ? null : this.fps(now);
    const stale = this.lastFrameAt === null || now - this.lastFrameAt > 2_000;
    const recent = stale ? [] : this.#recent;
    const latencies = recent.map((r) => r.latencyMs).sort((a, b) => a - b);
    const latencyMs = latencies.length ? latencies[latencies.length >> 1] : null;
    const source = sourceFps(recent);
    return {
      level: classifyQuality({ latencyMs, fps, sourceFps: source }),
      fps,
      sourceFps: source,
      latencyMs,
      bitrateBps: null,
      rttMs: null,
      loss: null,
      jitterBufferMs: null,
    };
  }

  /**
   * The element that shows the pictures; the live view puts it on the page.
   *
   * @abstract
   * @returns {HTMLCanvasElement | HTMLVideoElement | HTMLImageElement}
   */
  get element() {
    throw new Error("a transport must provide its element");
  }

  /** The size of the picture shown now, 0×0 before the first frame. */
  get frameSize() {
    return { width: 0, height: 0 };
  }

  /**
   * Frames per second actually shown, over the last two seconds.
   *
   * @param {number} [now]
   */
  fps(now = performance.now()) {
    return this.#meter.fps(now);
  }

  /** When the last frame was shown (ms, `performance.now()`), or null. */
  get lastFrameAt() {
    return this.#meter.last;
  }

  /**
   * Start showing a telescope's live view.
   *
   * @abstract
   * @param {string} _telescopeId
   */
  start(_telescopeId) {
    throw new Error("not implemented");
  }

  /** Stop and release the connection. @abstract */
  stop() {
    throw new Error("not implemented");
  }

  /**
   * Read the frame stamp from the picture shown now (not from any header): draws the current
   * frame to a canvas and decodes it. For latency measurement; null when there is no stamp.
   *
   * @returns {FrameStamp | null}
   */
  readFrameStamp() {
    const { width, height } = this.frameSize;
    return readFrameStampFrom(this.element, width, height);
  }

  // -- for subclasses -------------------------------------------------------------------------

  /**
   * @protected
   * @param {LiveState} next
   */
  setState(next) {
    const previous = this.#machine.to(next);
    if (previous === null) return;
    if (next === "connecting" || next === "idle") {
      this.#meter.reset();
      this.#recent = [];
    }
    this.dispatchEvent(new CustomEvent("statechange", { detail: { from: previous, to: next } }));
  }

  /**
   * Call once a frame is on screen.
   *
   * @protected
   * @param {FrameStamp | null} stamp
   * @param {number} [shownAt] when it was (or will be) presented (ms, `performance.now()` clock)
   * @param {number | null} [rtpTimestamp] its RTP timestamp, for a WebRTC frame
   */
  frameShown(stamp, shownAt = performance.now(), rtpTimestamp = null) {
    this.#meter.tick(shownAt);
    if (stamp) {
      const latencyMs = performance.timeOrigin + shownAt - stamp.emitMs;
      this.#recent.push({ frame: stamp.frame, emitMs: stamp.emitMs, latencyMs });
      if (this.#recent.length > QUALITY_WINDOW) this.#recent.shift();
    }
    this.#seq += 1;
    if (this.state !== "playing") this.setState("playing");
    const { width, height } = this.frameSize;
    /** @type {FrameInfo} */
    const detail = { seq: this.#seq, width, height, shownAt, stamp, rtpTimestamp };
    this.dispatchEvent(new CustomEvent("frame", { detail }));
  }
}
