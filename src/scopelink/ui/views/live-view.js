/**
 * The live view: the transport's picture (any `LiveTransport`: MJPEG or WebRTC) at the picture's
 * own aspect ratio (portrait previews in the star view, landscape video in the Moon, Sun, planet
 * and scenery views), with what it is showing laid over it: the stream state, the frame rate
 * measured from frames shown, the view mode, the target, a recording in progress, whether the
 * telescope's video is passed through or re-encoded, and, after a fallback to MJPEG, when
 * WebRTC is tried again. The stream pauses while the page is hidden (a phone in a pocket should
 * not pull video) and resumes when it is shown again.
 */

import { deliveryText, formatElapsed, RecordingClock } from "../lib/video-modes.js";
import { byTestId, setData, setText } from "./dom.js";
import { targetName } from "./labels.js";

/** @typedef {import('../services/live-transport.js').LiveTransport} LiveTransport */
/** @typedef {import('../services/live-transport.js').FrameInfo} FrameInfo */
/** @typedef {import('../services/live-transport.js').LiveQuality} LiveQuality */
/** @typedef {import('../services/live-switch.js').LiveSwitch} LiveSwitch */
/** @typedef {import('../lib/live-quality.js').TransportKind} TransportKind */
/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */
/** @typedef {import('../services/telemetry.js').TelescopeDetail} TelescopeDetail */

/** @type {Record<string, string>} */
const STATE_TEXT = {
  idle: "Idle",
  connecting: "Connecting…",
  playing: "Live",
  stalled: "Waiting for frames…",
  retrying: "Reconnecting…",
};

/** @type {Record<string, string>} */
const MODE_TEXT = {
  star: "Stars",
  moon: "Moon",
  sun: "Sun",
  planet: "Planet",
  scenery: "Scenery",
  solar_sys: "Solar system",
  none: "No view",
};

/** @type {Record<TransportKind, string>} */
const KIND_TEXT = { webrtc: "WebRTC", mjpeg: "MJPEG" };

/**
 * The quality badge's text: fps, bitrate, RTT and latency, each when known.
 *
 * @param {LiveQuality} q
 * @returns {string}
 */
export function qualityText(q) {
  const parts = [];
  if (q.bitrateBps !== null) {
    parts.push(
      q.bitrateBps >= 1e6
        ? `${(q.bitrateBps / 1e6).toFixed(1)} Mbit/s`
        : `${Math.round(q.bitrateBps / 1e3)} kbit/s`,
    );
  }
  if (q.rttMs !== null) parts.push(`RTT ${Math.round(q.rttMs)} ms`);
  if (q.loss !== null && q.loss > 0) parts.push(`loss ${(q.loss * 100).toFixed(1)} %`);
  if (q.latencyMs !== null) parts.push(`${Math.round(q.latencyMs)} ms`);
  return parts.join(" · ");
}

/**
 * The probe badge's text after a fallback: WebRTC is unavailable, and when it is tried again.
 *
 * @param {import('../services/live-switch.js').WebRtcProbe} probe
 * @param {number} now ms, `performance.now()`
 * @returns {string} empty when there is nothing to say
 */
export function probeText(probe, now) {
  if (probe.state === "probing") return "WebRTC unavailable · trying again…";
  if (probe.state !== "waiting") return "";
  const seconds = Math.max(1, Math.ceil((probe.retryAt - now) / 1000));
  return `WebRTC unavailable · retrying in ${seconds} s`;
}

/**
 * @param {HTMLElement} root the live view section
 * @param {{transport: LiveTransport, telemetry: TelemetryService,
 *          switcher?: LiveSwitch | null, onChoose?: (kind: TransportKind) => void,
 *          noTelescopeText?: () => string}} services
 *   `switcher`: when the transport can be switched (the toggle); `onChoose`: the user chose one;
 *   `noTelescopeText`: what the picture says while no telescope is shown (and why, if known)
 */
export function mountLiveView(root, services) {
  const { transport, telemetry, switcher = null, onChoose } = services;
  const noTelescopeText = services.noTelescopeText ?? (() => "No telescope selected.");
  const frame = byTestId(root, "live-frame", HTMLElement);
  const placeholder = byTestId(root, "live-placeholder", HTMLElement);
  const state = byTestId(root, "live-state", HTMLElement);
  const fps = byTestId(root, "live-fps", HTMLElement);
  const mode = byTestId(root, "live-mode", HTMLElement);
  const target = byTestId(root, "live-target", HTMLElement);
  const quality = byTestId(root, "live-quality", HTMLElement);
  const qualityLabel = byTestId(root, "live-quality-text", HTMLElement);
  const toggle = byTestId(root, "live-transport-toggle", HTMLButtonElement);
  const probe = byTestId(root, "live-webrtc-probe", HTMLElement);
  const delivery = byTestId(root, "live-delivery", HTMLElement);
  const recording = byTestId(root, "live-recording", HTMLElement);
  const recordingClock = new RecordingClock();
  /** @type {string | null} */
  let telescopeId = null;
  let aspect = "";

  const picture = transport.view;
  picture.setAttribute("aria-label", "Live camera picture");
  frame.prepend(picture);
  setData(root, "telescope", "none");

  function renderState() {
    const s = transport.state;
    setData(state, "state", s);
    setText(state, `${transport.name} · ${STATE_TEXT[s] ?? s}`);
    const hasPicture = transport.frameSize.width > 0;
    placeholder.hidden = hasPicture && s !== "retrying" && s !== "idle";
    if (!placeholder.hidden) {
      const why = transport.lastError ? ` (${transport.lastError})` : "";
      setText(
        placeholder,
        s === "retrying"
          ? `The camera stream was interrupted${why}. Reconnecting…`
          : telescopeId
            ? "Waiting for the camera…"
            : noTelescopeText(),
      );
    }
  }

  function renderFps() {
    const rate = transport.fps();
    // Playing but no rate yet: still measuring. Stalled: an honest zero.
    const text = rate > 0 || transport.state === "stalled" ? `${rate.toFixed(1)} fps` : "— fps";
    setText(fps, text);
    renderQuality();
    renderProbe();
  }

  function renderProbe() {
    const p = switcher?.probe;
    const text = p ? probeText(p, performance.now()) : "";
    probe.hidden = !text;
    setData(probe, "state", p?.state ?? "off");
    probe.title = p?.reason ? `WebRTC failed: ${p.reason}` : "";
    setText(probe, text);
  }

  function renderQuality() {
    const playing = transport.state === "playing" || transport.state === "stalled";
    const q = transport.connectionQuality();
    const text = qualityText(q);
    quality.hidden = !playing || (q.level === "unknown" && !text);
    setData(quality, "level", q.level);
    setData(quality, "transport", transport.name);
    quality.title = `Connection quality: ${q.level}`;
    setText(qualityLabel, text || q.level);
  }

  /** Whether the telescope's own video is passed through or re-encoded, and why. */
  function renderDelivery() {
    const t = telemetry.telescope;
    const kind = switcher ? switcher.kind : transport.name === "WebRTC" ? "webrtc" : "mjpeg";
    const d = t ? deliveryText(t.live, kind) : { text: "", title: "", passthrough: false };
    delivery.hidden = !d.text;
    delivery.title = d.title;
    setData(delivery, "passthrough", String(d.passthrough));
    setText(delivery, d.text);
  }

  function renderRecording() {
    const r = telemetry.telescope?.recording;
    recording.hidden = !r?.active;
    if (!r?.active) return;
    const frames = r.saved_frames == null ? "" : ` · ${r.saved_frames} frames`;
    setText(recording, `REC ${formatElapsed(recordingClock.elapsedMs(performance.now()))}${frames}`);
  }

  function renderToggle() {
    toggle.hidden = !switcher;
    if (!switcher) return;
    const other = switcher.kind === "webrtc" ? "mjpeg" : "webrtc";
    const blocked = other === "webrtc" && !switcher.webrtcSupported;
    toggle.disabled = blocked;
    toggle.dataset.kind = switcher.kind;
    toggle.title = blocked
      ? "This browser has no WebRTC"
      : `Switch the live view to ${KIND_TEXT[other]}`;
    setText(toggle, `Use ${KIND_TEXT[other]}`);
  }

  toggle.addEventListener("click", () => {
    if (!switcher) return;
    const other = switcher.kind === "webrtc" ? "mjpeg" : "webrtc";
    onChoose?.(other);
    switcher.prefer(other);
    renderToggle();
  });
  switcher?.addEventListener("switch", () => {
    renderToggle();
    renderState();
    renderDelivery();
  });
  switcher?.addEventListener("probechange", renderProbe);
  renderToggle();

  transport.addEventListener("statechange", () => {
    renderState();
    renderFps();
  });
  transport.addEventListener("frame", (event) => {
    const info = /** @type {CustomEvent<FrameInfo>} */ (event).detail;
    const next = `${info.width} / ${info.height}`;
    if (next !== aspect) {
      aspect = next;
      frame.style.setProperty("--frame-aspect", next);
      setData(frame, "orientation", info.width >= info.height ? "landscape" : "portrait");
      renderState();
    }
  });
  setInterval(() => {
    renderFps();
    renderRecording();
  }, 500);

  telemetry.addEventListener("telescope", (event) => {
    const { telescope, changed } = /** @type {CustomEvent<TelescopeDetail>} */ (event).detail;
    if (changed.has("view") || changed.has("operation")) {
      const m = telescope.view.mode;
      mode.hidden = !m;
      setText(mode, m ? (MODE_TEXT[m] ?? m) : "");
      const name = targetName(telescope);
      target.hidden = !name;
      setText(target, name ?? "");
    }
    if (changed.has("live")) renderDelivery();
    if (changed.has("recording")) {
      recordingClock.update(telescope.recording, performance.now());
      renderRecording();
    }
  });

  document.addEventListener("visibilitychange", () => {
    if (!telescopeId) return;
    if (document.hidden) transport.stop();
    else transport.start(telescopeId);
  });

  return {
    /** @param {string | null} id the telescope to show, or null for none */
    show(id) {
      telescopeId = id;
      setData(root, "telescope", id ? "shown" : "none");
      target.hidden = true;
      if (id && !document.hidden) transport.start(id);
      else transport.stop();
      renderState();
    },
    /** Say again what the picture shows (what `noTelescopeText` says has changed). */
    render: renderState,
  };
}
