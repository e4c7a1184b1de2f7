/**
 * The wide-angle camera (S30, S30 Pro) as a picture-in-picture in a corner of the live view: its
 * own MJPEG transport at a small width, its own aspect ratio, a badge saying whether its picture
 * is live, and a button to show or hide it (remembered per browser). On a model without a wide
 * camera neither the inset nor the button exists, and nothing is asked of that camera; the same
 * while the inset is hidden or the page is.
 */

import {
  camerasOf,
  hasWideCamera,
  insetShown,
  insetStateText,
  shouldStreamWide,
  WIDE_INSET_KEY,
} from "../lib/wide-camera.js";
import { byTestId, setData, setText } from "./dom.js";

/** @typedef {import('../services/live-transport.js').LiveTransport} LiveTransport */
/** @typedef {import('../services/live-transport.js').FrameInfo} FrameInfo */
/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */
/** @typedef {import('../services/telemetry.js').TelescopeDetail} TelescopeDetail */
/** @typedef {import('../services/telescopes.js').TelescopeList} TelescopeList */

/**
 * @param {HTMLElement} root the live view section
 * @param {{transport: LiveTransport, telemetry: TelemetryService, telescopes: TelescopeList,
 *          storage?: Pick<Storage, "getItem" | "setItem"> | null}} services
 *   `transport`: the wide camera's (an `MjpegTransport` with `camera: "wide"`)
 */
export function mountWideInset(
  root,
  { transport, telemetry, telescopes, storage = globalThis.localStorage ?? null },
) {
  const inset = byTestId(root, "wide-inset", HTMLElement);
  const state = byTestId(root, "wide-state", HTMLElement);
  const toggle = byTestId(root, "wide-toggle", HTMLButtonElement);
  /** @type {string | null} */
  let telescopeId = null;
  let shown = insetShown(read());
  let aspect = "";

  const picture = transport.view;
  picture.dataset.testid = "wide-canvas"; // the main picture keeps "live-canvas"
  picture.setAttribute("aria-label", "Wide-angle camera picture");
  inset.prepend(picture);

  /** @returns {string | null} */
  function read() {
    try {
      return storage?.getItem(WIDE_INSET_KEY) ?? null;
    } catch {
      return null; // storage disabled: the default
    }
  }

  /** @param {boolean} value */
  function remember(value) {
    try {
      storage?.setItem(WIDE_INSET_KEY, value ? "shown" : "hidden");
    } catch {
      // storage disabled: the choice lasts for this page
    }
  }

  function cameras() {
    return camerasOf(telemetry.telescope?.device, telescopes.selected);
  }

  /** Start or stop the stream to match what is on screen, then draw it. */
  function sync() {
    const want = shouldStreamWide({
      telescopeId,
      cameras: cameras(),
      shown,
      pageHidden: document.hidden,
    });
    const streaming = transport.state !== "idle";
    if (want && !streaming && telescopeId) transport.start(telescopeId);
    if (!want && streaming) transport.stop();
    render();
  }

  function render() {
    const available = telescopeId !== null && hasWideCamera(cameras());
    toggle.hidden = !available;
    inset.hidden = !available || !shown;
    setText(toggle, shown ? "Hide wide" : "Show wide");
    toggle.title = shown
      ? "Hide the wide-angle camera's picture"
      : "Show the wide-angle camera's picture in a corner";
    const s = transport.state;
    setData(inset, "state", s);
    setData(state, "state", s);
    setText(state, insetStateText(s));
    state.title = transport.lastError ? `Last failure: ${transport.lastError}` : "";
    // A picture older than the stream's state (stalled, reconnecting) is dimmed, not passed off.
    setData(inset, "current", String(s === "playing"));
  }

  toggle.addEventListener("click", () => {
    shown = !shown;
    remember(shown);
    sync();
  });
  transport.addEventListener("statechange", render);
  transport.addEventListener("frame", (event) => {
    const info = /** @type {CustomEvent<FrameInfo>} */ (event).detail;
    const next = `${info.width} / ${info.height}`;
    if (next !== aspect) {
      aspect = next;
      inset.style.setProperty("--inset-aspect", next);
    }
  });
  telemetry.addEventListener("telescope", (event) => {
    // The model (and so the cameras) is learnt on connect: the inset may appear or go then.
    if (/** @type {CustomEvent<TelescopeDetail>} */ (event).detail.changed.has("device")) sync();
  });
  telescopes.addEventListener("change", sync);
  document.addEventListener("visibilitychange", sync);
  render();

  return {
    /** @param {string | null} id the telescope shown, or null for none */
    show(id) {
      if (id !== telescopeId) transport.stop(); // another telescope: its own stream, or none
      telescopeId = id;
      sync();
    },
  };
}
