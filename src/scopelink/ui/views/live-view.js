/**
 * The live view: the transport's picture (any `LiveTransport`: MJPEG now, WebRTC later), with
 * what it is showing laid over it: the stream state, the frame rate measured from frames shown,
 * the view mode, and the target. The stream pauses while the page is hidden (a phone in a pocket
 * should not pull video) and resumes when it is shown again.
 */

import { byTestId, setData, setText } from "./dom.js";
import { targetName } from "./labels.js";

/** @typedef {import('../services/live-transport.js').LiveTransport} LiveTransport */
/** @typedef {import('../services/live-transport.js').FrameInfo} FrameInfo */
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

/**
 * @param {HTMLElement} root the live view section
 * @param {{transport: LiveTransport, telemetry: TelemetryService}} services
 */
export function mountLiveView(root, { transport, telemetry }) {
  const frame = byTestId(root, "live-frame", HTMLElement);
  const placeholder = byTestId(root, "live-placeholder", HTMLElement);
  const state = byTestId(root, "live-state", HTMLElement);
  const fps = byTestId(root, "live-fps", HTMLElement);
  const mode = byTestId(root, "live-mode", HTMLElement);
  const target = byTestId(root, "live-target", HTMLElement);
  /** @type {string | null} */
  let telescopeId = null;
  let aspect = "";

  const picture = transport.element;
  picture.setAttribute("aria-label", "Live camera picture");
  frame.prepend(picture);

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
            : "No telescope selected.",
      );
    }
  }

  function renderFps() {
    const rate = transport.fps();
    // Playing but no rate yet: still measuring. Stalled: an honest zero.
    const text = rate > 0 || transport.state === "stalled" ? `${rate.toFixed(1)} fps` : "— fps";
    setText(fps, text);
  }

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
      renderState();
    }
  });
  setInterval(renderFps, 500);

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
      target.hidden = true;
      if (id && !document.hidden) transport.start(id);
      else transport.stop();
      renderState();
    },
  };
}
