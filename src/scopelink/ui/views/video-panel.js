/**
 * Video: the video views' digital zoom (1×, 2×, 4×; only there), recording on the telescope with
 * how long and how many frames, and what the telescope's stream is. Everything shown comes from
 * telemetry; outside the video views the controls say why they are unavailable.
 */

import {
  isVideoView,
  NEEDS_VIDEO_VIEW,
  RecordingClock,
  recordingText,
  streamFactsText,
} from "../lib/video-modes.js";
import { clearError, runCommand } from "./command-feedback.js";
import { buttons, byTestId, setData, setText } from "./dom.js";

/** @typedef {import('../services/commands.js').CommandPort} CommandPort */
/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */
/** @typedef {import('../services/telemetry.js').TelescopeDetail} TelescopeDetail */
/** @typedef {import('../types/protocol').SetZoom} SetZoom */

/**
 * @param {HTMLElement} root the video panel
 * @param {{commands: CommandPort, telemetry: TelemetryService, telescopeId: () => string | null}} services
 */
export function mountVideoPanel(root, { commands, telemetry, telescopeId }) {
  const zoom = byTestId(root, "zoom", HTMLElement);
  const zoomButtons = buttons(zoom, "[data-zoom]");
  const record = byTestId(root, "record", HTMLButtonElement);
  const status = byTestId(root, "recording-status", HTMLElement);
  const indicator = byTestId(root, "recording-indicator", HTMLElement);
  const reason = byTestId(root, "video-reason", HTMLElement);
  const stream = byTestId(root, "video-stream", HTMLElement);
  const error = byTestId(root, "video-error", HTMLElement);
  const clock = new RecordingClock();
  /** A command in flight: its control stays busy until the answer, whatever telemetry says. */
  let sending = false;
  /** @type {ReturnType<typeof setInterval> | null} */
  let ticker = null;

  for (const button of zoomButtons) {
    button.addEventListener("click", async () => {
      const id = telescopeId();
      if (!id || button.getAttribute("aria-checked") === "true") return;
      const factor = /** @type {SetZoom["zoom"]} */ (Number(button.dataset.zoom));
      sending = true;
      await runCommand(button, error, () => commands.send(id, { type: "set_zoom", zoom: factor }));
      sending = false;
      render();
    });
  }

  record.addEventListener("click", async () => {
    const id = telescopeId();
    if (!id) return;
    const recording = telemetry.telescope?.recording.active ?? false;
    sending = true;
    await runCommand(record, error, () =>
      commands.send(id, { type: recording ? "stop_recording" : "start_recording" }),
    );
    sending = false;
    render();
  });

  function renderRecording() {
    const t = telemetry.telescope;
    if (!t) return;
    const text = recordingText(t.recording, clock.elapsedMs(performance.now()));
    setText(status, text);
    setText(indicator, t.recording.active ? `REC ${text.replace(/^Recording /, "")}` : "");
  }

  function render() {
    const t = telemetry.telescope;
    const video = isVideoView(t?.view);
    const recording = t?.recording.active ?? false;
    zoom.hidden = !video;
    for (const button of zoomButtons) {
      const on = Number(button.dataset.zoom) === (t?.view.zoom ?? 1);
      button.setAttribute("aria-checked", String(on));
    }
    reason.hidden = video || recording;
    setText(reason, NEEDS_VIDEO_VIEW);
    if (!sending) {
      // A recording can be stopped even if the view state says otherwise for a moment.
      record.disabled = !video && !recording;
      record.title = record.disabled ? NEEDS_VIDEO_VIEW : "";
    }
    setText(record, recording ? "Stop recording" : "Start recording");
    record.setAttribute("aria-pressed", String(recording));
    record.classList.toggle("danger-outline", recording);
    setData(root, "recording", String(recording));
    indicator.hidden = !recording;
    const facts = t ? streamFactsText(t.live) : "";
    stream.hidden = !facts;
    setText(stream, facts);
    renderRecording();
    if (recording && !ticker) ticker = setInterval(renderRecording, 500);
    if (!recording && ticker) {
      clearInterval(ticker);
      ticker = null;
    }
  }

  telemetry.addEventListener("telescope", (event) => {
    const { telescope, changed } = /** @type {CustomEvent<TelescopeDetail>} */ (event).detail;
    if (changed.has("recording")) clock.update(telescope.recording, performance.now());
    if (changed.has("view") || changed.has("recording") || changed.has("live")) render();
  });
  render();

  return {
    reset() {
      clearError(error);
      render();
    },
  };
}
