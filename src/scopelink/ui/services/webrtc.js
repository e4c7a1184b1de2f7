/**
 * The live view over WebRTC: H.264 video from the server's encoder (docs/webrtc-media.md),
 * negotiated over the app's WebSocket signaling channel (services/signaling.js) and shown in a
 * `<video playsinline muted autoplay>`.
 *
 * - One signaling socket per `start()`; on its `hello` a session is made: an RTCPeerConnection
 *   with the hello's ICE servers, one recvonly video transceiver (H.264 first where
 *   `setCodecPreferences` exists, or only the `codec` asked for), the offer, our candidates
 *   trickled, the answer applied.
 * - Playout: the receiver's `jitterBufferTarget` is 0 (older Chromium: `playoutDelayHint`), so
 *   the browser holds no frame longer than its jitter estimate needs; the source is live.
 * - Frames: `requestVideoFrameCallback` gives one callback per frame presented; each becomes a
 *   `frame` event with `shownAt` = the frame's expected display time and the stamp read from the
 *   video's pixels (only the top band is drawn: lib/framestamp.js). A video that holds every
 *   frame back about a frame interval (a Chromium state, lib/live-quality.js
 *   `HeldFrameDetector`) gets its track attached again.
 * - Reconnection: ICE `disconnected` for `disconnectGraceMs` counts as failed; on failure the
 *   transport goes `retrying`, waits (capped exponential backoff), asks for an ICE `restart`
 *   (the server always refuses with 422) and then offers a new session. A closed signaling socket
 *   is reopened the same way. Nothing older than the newest frame is ever waited for.
 * - Quality: `getStats()` once a second (fps, bitrate, RTT, loss, jitter-buffer delay), graded
 *   with the latency from the stamps by lib/live-quality.js.
 */

import { Backoff } from "../lib/backoff.js";
import { readFrameStampFrom } from "../lib/framestamp.js";
import {
  HeldFrameDetector,
  classifyQuality,
  codecPreferences,
  linkFigures,
} from "../lib/live-quality.js";
import { LiveTransport } from "./live-transport.js";
import { SignalingClient } from "./signaling.js";

/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {import('./live-transport.js').LiveQuality} LiveQuality */
/** @typedef {import('./signaling.js').HelloMessage} HelloMessage */
/** @typedef {import('./signaling.js').AnswerMessage} AnswerMessage */
/** @typedef {import('./signaling.js').ErrorMessage} ErrorMessage */
/** @typedef {import('./signaling.js').SessionMessage} SessionMessage */
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
 * @property {number} [restartAnswerMs] how long to wait for the answer to a `restart`
 * @property {(telescopeId: string, pc: RTCPeerConnection) => void} [onPeer] called with each new
 *   peer connection before its offer: the data-channel protocol opens its channels there
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
  #signaling;
  /** @type {RTCPeerConnection | null} */
  #pc = null;
  /** @type {RTCRtpReceiver | null} */
  #receiver = null;
  /** @type {string | null} */
  #telescopeId = null;
  /** @type {string | null} */
  #shown = null;
  /** Bumped on every new session and on stop, so callbacks of an old one do nothing. */
  #run = 0;
  #hasFrame = false;
  #sessionAt = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #retryTimer = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #graceTimer = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #restartTimer = null;
  /** @type {ReturnType<typeof setInterval> | null} */
  #ticker = null;
  /** @type {StatsSnapshot | null} */
  #lastStats = null;
  /** @type {LinkFigures} */
  #figures = NO_FIGURES;
  #backoff = new Backoff({ initialMs: 500, maximumMs: 10_000 });
  /** The server's session id, for the UI and the logs. @type {string | null} */
  sessionId = null;
  /** The server's last `stats` message. @type {Record<string, unknown> | null} */
  serverStats = null;

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
      restartAnswerMs = 2_000,
      onPeer,
    } = {},
  ) {
    super();
    this.api = api;
    this.onPeer = onPeer ?? null;
    this.iceTransportPolicy = iceTransportPolicy;
    this.tier = tier;
    this.codec = codec;
    this.jitterBufferTarget = jitterBufferTarget;
    this.stallAfterMs = stallAfterMs;
    this.restartAfterMs = restartAfterMs;
    this.disconnectGraceMs = disconnectGraceMs;
    this.restartAnswerMs = restartAnswerMs;
    const video = this.#video;
    video.dataset.testid = "live-video";
    video.muted = true;
    video.autoplay = true;
    video.playsInline = true;
    video.setAttribute("playsinline", "");
    video.setAttribute("muted", "");
    video.setAttribute("autoplay", "");
    video.disablePictureInPicture = true;
    this.#signaling = new SignalingClient(api);
    this.#signaling.addEventListener("hello", () => this.#newSession());
    this.#signaling.addEventListener("answer", (event) => {
      void this.#answer(/** @type {CustomEvent<AnswerMessage>} */ (event).detail);
    });
    this.#signaling.addEventListener("error", (event) => {
      this.#refused(/** @type {CustomEvent<ErrorMessage>} */ (event).detail);
    });
    this.#signaling.addEventListener("session", (event) => {
      const message = /** @type {CustomEvent<SessionMessage>} */ (event).detail;
      if (message.session_id !== this.sessionId) return;
      if (message.state === "failed" || message.state === "closed") {
        this.#failed(`the server ended the session (${message.reason ?? message.state})`);
      }
    });
    this.#signaling.addEventListener("stats", (event) => {
      const detail = /** @type {CustomEvent<{stats: Record<string, unknown>}>} */ (event).detail;
      this.serverStats = detail.stats;
    });
    this.#signaling.addEventListener("statechange", () => {
      if (this.#signaling.state === "closed" && this.#telescopeId) {
        this.#failed(this.#signaling.closeReason ?? "signaling closed");
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

  /** The signaling channel's state, for the UI and tests. */
  get signalingState() {
    return this.#signaling.state;
  }

  /** The video receiver of the session now, or null without one (for tests). */
  get receiver() {
    return this.#receiver;
  }

  /** The peer connection's state, or null without one. */
  get connectionState() {
    return this.#pc?.connectionState ?? null;
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
    this.#backoff.reset();
    this.#ticker = setInterval(() => void this.#tick(), 1_000);
    this.#open();
  }

  /** @override */
  stop() {
    this.#run += 1;
    this.#telescopeId = null;
    for (const timer of [this.#retryTimer, this.#graceTimer, this.#restartTimer]) {
      if (timer) clearTimeout(timer);
    }
    if (this.#ticker) clearInterval(this.#ticker);
    this.#retryTimer = this.#graceTimer = this.#restartTimer = this.#ticker = null;
    this.#signaling.close();
    this.#closePeer();
    this.#figures = NO_FIGURES;
    this.setState("idle");
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

  /** Open the signaling socket; its `hello` starts a session. */
  #open() {
    const id = this.#telescopeId;
    if (!id) return;
    this.#sessionAt = performance.now();
    this.setState("connecting");
    this.#signaling.connect(id);
  }

  /** A new peer connection and offer (replacing any session on this socket). */
  #newSession() {
    const hello = this.#signaling.hello;
    if (!this.#telescopeId || !hello) return;
    this.#closePeer();
    const run = ++this.#run;
    this.#sessionAt = performance.now();
    if (this.state !== "connecting") this.setState("connecting");
    /** @type {RTCConfiguration} */
    const config = {
      iceServers: hello.ice_servers.map((s) => ({ ...s })),
      iceTransportPolicy: this.iceTransportPolicy,
      bundlePolicy: "max-bundle",
    };
    const pc = new RTCPeerConnection(config);
    this.#pc = pc;
    const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
    preferCodecs(transceiver, this.codec);
    this.onPeer?.(this.#telescopeId, pc);
    this.#receiver = transceiver.receiver;
    if (this.jitterBufferTarget !== null) {
      setPlayoutDelay(transceiver.receiver, this.jitterBufferTarget);
    }
    pc.addEventListener("icecandidate", (event) => {
      if (run !== this.#run) return;
      const c = event.candidate;
      this.#signaling.send(
        c && c.candidate
          ? {
              type: "candidate",
              candidate: c.candidate,
              sdpMid: c.sdpMid,
              sdpMLineIndex: c.sdpMLineIndex,
            }
          : { type: "candidate", candidate: "" },
      );
    });
    pc.addEventListener("track", (event) => {
      if (run !== this.#run) return;
      const stream = event.streams[0] ?? new MediaStream([event.track]);
      this.#video.srcObject = stream;
      void this.#video.play().catch(() => undefined); // muted autoplay: allowed everywhere
      this.#watchFrames(run);
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (run !== this.#run) return;
      this.#iceChanged(pc.iceConnectionState);
    });
    void this.#offer(pc, run);
  }

  /**
   * @param {RTCPeerConnection} pc
   * @param {number} run
   */
  async #offer(pc, run) {
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (run !== this.#run) return;
      const sdp = pc.localDescription?.sdp ?? offer.sdp ?? "";
      this.#signaling.send(
        this.tier ? { type: "offer", sdp, tier: this.tier } : { type: "offer", sdp },
      );
    } catch (error) {
      if (run === this.#run) this.#failed(`offer failed: ${message(error)}`);
    }
  }

  /** @param {AnswerMessage} answer */
  async #answer(answer) {
    const pc = this.#pc;
    const run = this.#run;
    if (!pc || pc.signalingState !== "have-local-offer") return;
    this.sessionId = answer.session_id;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch (error) {
      if (run === this.#run) this.#failed(`bad answer: ${message(error)}`);
    }
  }

  /** @param {ErrorMessage} error */
  #refused({ problem }) {
    if (!this.#telescopeId) return;
    if (problem.status === 422 && this.#restartTimer) {
      // The expected refusal of an ICE restart: a fresh session instead.
      clearTimeout(this.#restartTimer);
      this.#restartTimer = null;
      this.#newSession();
      return;
    }
    const why =
      problem.status === 503 ? "the server has no room for another viewer" : problem.title;
    this.#failed(`${why}${problem.detail ? `: ${problem.detail}` : ""}`);
  }

  /** @param {RTCIceConnectionState} state */
  #iceChanged(state) {
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    if (state === "disconnected") {
      this.#graceTimer = setTimeout(() => {
        this.#graceTimer = null;
        this.#failed("the connection was interrupted");
      }, this.disconnectGraceMs);
    } else if (state === "failed") {
      this.#failed("the connection failed");
    }
  }

  /**
   * Something broke: wait (backoff), then recover. With the signaling socket still open: ask for
   * an ICE restart (the server answers 422) and make a new session; otherwise reopen the socket.
   *
   * @param {string} why
   */
  #failed(why) {
    if (!this.#telescopeId || this.state === "retrying") return;
    this.lastError = why;
    this.#run += 1; // the old session's callbacks are ignored from here
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    this.setState("retrying");
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      if (!this.#telescopeId) return;
      if (this.#signaling.state === "open" && this.#pc) {
        this.setState("connecting");
        this.#signaling.send({ type: "restart" });
        this.#restartTimer = setTimeout(() => {
          this.#restartTimer = null;
          this.#newSession(); // no answer to the restart: a new session anyway
        }, this.restartAnswerMs);
      } else if (this.#signaling.state === "open") {
        this.#newSession();
      } else {
        this.#open();
      }
    }, this.#backoff.next());
  }

  #closePeer() {
    const pc = this.#pc;
    this.#pc = null;
    this.#receiver = null;
    this.sessionId = null;
    this.#lastStats = null;
    this.#figures = NO_FIGURES;
    pc?.close();
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
      this.#backoff.reset();
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
      this.#failed(`no frame for ${Math.round((now - last) / 1000)} s`);
    }
    const pc = this.#pc;
    if (!pc || pc.connectionState !== "connected") return;
    try {
      const snapshot = snapshotOf(await pc.getStats());
      if (pc !== this.#pc) return;
      this.#figures = linkFigures(this.#lastStats, snapshot);
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
  return snapshot;
}

/** @param {unknown} error */
function message(error) {
  return error instanceof Error ? error.message : String(error);
}
