/**
 * WebRTC preferred, MJPEG as the fallback, behind one `LiveTransport` the live view shows.
 *
 * - `prefer(kind)` chooses the transport (app.js resolves the feature flag: lib/live-quality.js
 *   `chooseTransport`); WebRTC is only used where the browser has `RTCPeerConnection`.
 * - Fallback: WebRTC that has been trying (`connecting` or `retrying`) for `fallbackAfterMs`
 *   without a frame is given up and MJPEG takes over. The next `start()` (another telescope, the
 *   page shown again) or `prefer("webrtc")` tries WebRTC again at once.
 * - Probing: after such an automatic fallback WebRTC is tried again in the background (the
 *   `probe` machine, PROBE_TRANSITIONS) after a capped exponential backoff with jitter, while
 *   MJPEG keeps showing. A probe that shows a frame takes over (keeping the picture, as below);
 *   one that is refused, fails, or shows nothing within `fallbackAfterMs` is stopped and the next
 *   one waits longer. MJPEG chosen on purpose (the flag) is never probed.
 * - Switching either way keeps the last picture: the new transport's element is put *under* the
 *   one showing the picture, the old transport keeps playing, and on the new one's first `frame`
 *   the two swap and the old one stops.
 *
 * `state`, `name`, `fps()` and the events follow the *active* transport (the one chosen now);
 * `element`, `frameSize` and `readFrameStamp()` follow the one whose picture is on top. Events:
 * `statechange`, `frame` (as any transport), `switch` ({kind, reason}) when the active one changes,
 * `probechange` ({from, to}) when the probe's state changes.
 */

import { Backoff } from "../lib/backoff.js";
import { shouldFallBack } from "../lib/live-quality.js";
import { StateMachine } from "../lib/state-machine.js";
import { LiveTransport } from "./live-transport.js";

/** @typedef {import('../lib/live-quality.js').TransportKind} TransportKind */
/** @typedef {import('./live-transport.js').LiveQuality} LiveQuality */
/** @typedef {import('./live-transport.js').FrameInfo} FrameInfo */

/**
 * @typedef {object} LiveSwitchOptions
 * @property {() => LiveTransport} mjpeg
 * @property {(() => LiveTransport) | null} webrtc null when the browser has no WebRTC
 * @property {number} [fallbackAfterMs]
 * @property {Backoff} [probeBackoff] the delays between probes after a fallback
 */

/**
 * WebRTC tried again in the background after an automatic fallback to MJPEG:
 * - `off`: no fallback (WebRTC in use, or MJPEG chosen), or stopped;
 * - `waiting`: fallen back, the next probe is due at `retryAt`;
 * - `probing`: a WebRTC session is being set up underneath the MJPEG picture.
 *
 * @typedef {"off" | "waiting" | "probing"} ProbeState
 */

/**
 * @typedef {object} WebRtcProbe
 * @property {ProbeState} state
 * @property {number} retryAt when the next probe is due (ms, `performance.now()`), when waiting
 * @property {string | null} reason why WebRTC is unavailable (the last failure), for the UI
 */

/** @type {Readonly<Record<ProbeState, readonly ProbeState[]>>} */
export const PROBE_TRANSITIONS = {
  off: ["waiting"],
  waiting: ["probing", "off"],
  probing: ["waiting", "off"],
};

export class LiveSwitch extends LiveTransport {
  #stack = document.createElement("div");
  /** @type {Partial<Record<TransportKind, LiveTransport>>} */
  #made = {};
  #factories;
  /** @type {TransportKind} */
  #wish = "mjpeg";
  /** The transport in use now. @type {LiveTransport} */
  #active;
  /** The transport whose picture is on top. @type {LiveTransport} */
  #shown;
  /** @type {string | null} */
  #telescopeId = null;
  /** The telescope of the last start (kept across a stop). @type {string | null} */
  #lastId = null;
  /** WebRTC was given up for this start. */
  #fellBack = false;
  /** When the active transport started trying without a picture (ms). */
  #tryingSince = 0;
  /** @type {ReturnType<typeof setInterval> | null} */
  #watchdog = null;
  #probe = new StateMachine(PROBE_TRANSITIONS, /** @type {ProbeState} */ ("off"));
  #probeBackoff;
  /** When the next probe is due (ms). */
  #retryAt = 0;
  /** When the running probe started (ms). */
  #probeSince = 0;
  /** @type {string | null} */
  #probeReason = null;

  /** @param {LiveSwitchOptions} options */
  constructor({
    mjpeg,
    webrtc,
    fallbackAfterMs = 4_000,
    probeBackoff = new Backoff({ initialMs: 5_000, maximumMs: 30_000 }),
  }) {
    super();
    this.#factories = { mjpeg, webrtc };
    this.fallbackAfterMs = fallbackAfterMs;
    this.#probeBackoff = probeBackoff;
    this.#stack.className = "live-stack";
    this.#stack.dataset.testid = "live-stack";
    this.#active = this.#transport("mjpeg");
    this.#shown = this.#active;
    this.#stack.append(this.#shown.element);
    this.#setLayers();
  }

  /** Whether WebRTC can be used in this browser. */
  get webrtcSupported() {
    return this.#factories.webrtc !== null;
  }

  /** The transport chosen (what the toggle shows), whatever a fallback did. */
  get preferred() {
    return this.#wish;
  }

  /** The transport in use now. @returns {TransportKind} */
  get kind() {
    return this.#active.name === "WebRTC" ? "webrtc" : "mjpeg";
  }

  /** Whether WebRTC was given up for MJPEG since the last start. */
  get fellBack() {
    return this.#fellBack;
  }

  /** WebRTC tried again after a fallback (the UI shows it). @returns {WebRtcProbe} */
  get probe() {
    return { state: this.#probe.state, retryAt: this.#retryAt, reason: this.#probeReason };
  }

  /** The transport in use now (for tests and figures). */
  get active() {
    return this.#active;
  }

  /** @override */
  get name() {
    return this.#active.name;
  }

  /** @override */
  get state() {
    return this.#active.state;
  }

  /** @override */
  get view() {
    return this.#stack;
  }

  /** @override */
  get element() {
    return this.#shown.element;
  }

  /** @override */
  get frameSize() {
    return this.#shown.frameSize;
  }

  /** @override */
  get lastFrameAt() {
    return this.#active.lastFrameAt;
  }

  /**
   * @override
   * @param {number} [now]
   */
  fps(now) {
    return this.#active.fps(now);
  }

  /**
   * @override
   * @param {number} [now]
   * @returns {LiveQuality}
   */
  connectionQuality(now) {
    return this.#active.connectionQuality(now);
  }

  /** @override */
  readFrameStamp() {
    return this.#shown.readFrameStamp();
  }

  /**
   * Choose the transport; switches now when started.
   *
   * @param {TransportKind} kind
   */
  prefer(kind) {
    this.#wish = kind;
    this.#fellBack = false;
    this.#endProbe();
    if (this.#telescopeId) this.#use(this.#effective(), "chosen");
  }

  /**
   * @override
   * @param {string} telescopeId
   */
  start(telescopeId) {
    const other = telescopeId !== this.#lastId;
    this.#lastId = telescopeId;
    this.#telescopeId = telescopeId;
    this.#fellBack = false;
    this.#endProbe();
    this.#watchdog ??= setInterval(() => this.#check(), 250);
    const kind = this.#effective();
    if (!other) {
      this.#use(kind, "chosen");
      return;
    }
    // Another telescope: no picture of the previous one may stay up while this one connects.
    const next = this.#transport(kind);
    for (const transport of Object.values(this.#made)) if (transport !== next) transport.stop();
    const from = this.#active.state;
    this.#active = next;
    this.#shown = next;
    if (!next.element.isConnected) this.#stack.append(next.element);
    this.#setLayers();
    this.#tryingSince = performance.now();
    next.start(telescopeId);
    this.lastError = next.lastError;
    this.dispatchEvent(new CustomEvent("switch", { detail: { kind, reason: "started" } }));
    this.dispatchEvent(new CustomEvent("statechange", { detail: { from, to: next.state } }));
  }

  /** @override */
  stop() {
    this.#telescopeId = null;
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#watchdog = null;
    for (const transport of Object.values(this.#made)) transport.stop();
    this.#endProbe();
  }

  /** @returns {TransportKind} */
  #effective() {
    return this.#wish === "webrtc" && this.webrtcSupported && !this.#fellBack ? "webrtc" : "mjpeg";
  }

  /**
   * @param {TransportKind} kind
   * @returns {LiveTransport}
   */
  #transport(kind) {
    let made = this.#made[kind];
    if (made) return made;
    const factory = (kind === "webrtc" && this.#factories.webrtc) || this.#factories.mjpeg;
    made = factory();
    this.#made[kind] = made;
    made.addEventListener("statechange", (event) => {
      if (made !== this.#active) return;
      const { from, to } = /** @type {CustomEvent<{from: string, to: string}>} */ (event).detail;
      const trying = (/** @type {string} */ s) => s === "connecting" || s === "retrying";
      if (trying(to) && !trying(from)) this.#tryingSince = performance.now();
      this.lastError = made.lastError;
      this.dispatchEvent(new CustomEvent("statechange", { detail: { from, to } }));
    });
    made.addEventListener("frame", (event) => {
      if (made !== this.#active) {
        if (made !== this.#made.webrtc || this.#probe.state !== "probing") return;
        this.#probeSucceeded(made);
      }
      if (this.#shown !== made) this.#swap();
      const detail = /** @type {CustomEvent<FrameInfo>} */ (event).detail;
      this.dispatchEvent(new CustomEvent("frame", { detail }));
    });
    return made;
  }

  /**
   * Make `kind` the active transport and start it; the picture on top stays until it shows a
   * frame.
   *
   * @param {TransportKind} kind
   * @param {string} reason
   */
  #use(kind, reason) {
    const id = this.#telescopeId;
    const next = this.#transport(kind);
    const previous = this.#active;
    if (!id) return;
    if (next === previous && next.state !== "idle") return;
    this.#active = next;
    if (!next.element.isConnected) this.#stack.append(next.element);
    this.#tryingSince = performance.now();
    const from = previous.state;
    next.start(id);
    if (this.#shown !== next && this.#shown.frameSize.width === 0) this.#swap();
    this.#setLayers();
    this.lastError = next.lastError;
    this.dispatchEvent(new CustomEvent("switch", { detail: { kind, reason } }));
    this.dispatchEvent(new CustomEvent("statechange", { detail: { from, to: next.state } }));
  }

  /** The active transport's picture goes on top; any other transport stops. */
  #swap() {
    this.#shown = this.#active;
    for (const transport of Object.values(this.#made)) {
      if (transport !== this.#active) transport.stop();
    }
    this.#setLayers();
  }

  #setLayers() {
    for (const transport of Object.values(this.#made)) {
      const el = transport.element;
      el.classList.toggle("live-shown", transport === this.#shown);
      el.classList.toggle("live-pending", transport !== this.#shown);
      el.setAttribute("aria-hidden", String(transport !== this.#shown));
    }
  }

  #check() {
    if (!this.#telescopeId) return;
    if (this.kind !== "webrtc") {
      this.#checkProbe();
      return;
    }
    const active = this.#active;
    const since = Math.max(this.#tryingSince, active.lastFrameAt ?? 0);
    const afterMs = this.fallbackAfterMs;
    if (shouldFallBack({ state: active.state, since, now: performance.now(), afterMs })) {
      this.#fellBack = true;
      const why = active.lastError ?? `no picture within ${Math.round(afterMs / 1000)} s`;
      this.#use("mjpeg", `WebRTC failed (${why})`);
      this.lastError = null;
      this.#probeBackoff.reset();
      this.#probeLater(why);
    }
  }

  // -- probing WebRTC after a fallback ---------------------------------------------------------

  /** Start a due probe; give up a probe that failed or took too long. */
  #checkProbe() {
    const id = this.#telescopeId;
    const now = performance.now();
    if (!id) return;
    if (this.#probe.state === "waiting" && now >= this.#retryAt) {
      const probe = this.#transport("webrtc");
      if (!probe.element.isConnected) this.#stack.append(probe.element);
      this.#setLayers();
      this.#probeSince = now;
      this.#setProbe("probing");
      probe.start(id);
      return;
    }
    const probe = this.#made.webrtc;
    if (this.#probe.state !== "probing" || !probe) return;
    // A probe gets one attempt: its own reconnecting (`retrying`) already counts as a failure.
    const { state } = probe;
    const afterMs = this.fallbackAfterMs;
    const tooLong = shouldFallBack({ state, since: this.#probeSince, now, afterMs });
    if (state === "retrying" || state === "idle" || tooLong) {
      const why = probe.lastError ?? `no picture within ${Math.round(afterMs / 1000)} s`;
      probe.stop();
      this.#probeLater(why);
    }
  }

  /** @param {string} why */
  #probeLater(why) {
    this.#probeReason = why;
    this.#retryAt = performance.now() + this.#probeBackoff.next();
    this.#setProbe("waiting");
  }

  /**
   * The probe showed a frame: WebRTC becomes the active transport (the caller swaps the picture).
   *
   * @param {LiveTransport} probe
   */
  #probeSucceeded(probe) {
    const from = this.#active.state;
    this.#fellBack = false;
    this.#setProbe("off");
    this.#active = probe;
    this.lastError = null;
    const detail = { kind: "webrtc", reason: "WebRTC is back" };
    this.dispatchEvent(new CustomEvent("switch", { detail }));
    this.dispatchEvent(new CustomEvent("statechange", { detail: { from, to: probe.state } }));
  }

  /** No more probing (a start, a stop, a choice); a probe running underneath is stopped. */
  #endProbe() {
    const probe = this.#made.webrtc;
    if (this.#probe.state === "probing" && probe && probe !== this.#active) probe.stop();
    this.#probeReason = null;
    this.#setProbe("off");
  }

  /** @param {ProbeState} next */
  #setProbe(next) {
    const from = this.#probe.to(next);
    if (from === null) return;
    this.dispatchEvent(new CustomEvent("probechange", { detail: { from, to: next } }));
  }
}
