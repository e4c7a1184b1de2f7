/**
 * The video views (Moon, Sun, planet, scenery), in words: whether the telescope is in one, how
 * long it has been recording, and how its video reaches this page. Pure functions of the
 * telemetry state, so the views only place the text.
 */

/** @typedef {import('../types/protocol').View} View */
/** @typedef {import('../types/protocol').Recording} Recording */
/** @typedef {import('../types/protocol').Live} Live */
/** @typedef {import('./live-quality.js').TransportKind} TransportKind */

/** The digital zoom factors the telescope offers in its video views. */
export const ZOOMS = /** @type {const} */ ([1, 2, 4]);

/** Why recording and zoom are unavailable outside the video views. */
export const NEEDS_VIDEO_VIEW = "Recording and zoom need a Moon, Sun, planet or scenery view.";

/**
 * The telescope streams (and can record) video: its view stage is RTSP. The mode alone is not
 * enough: a goto to the Moon is in the Moon mode while it slews, before the video starts.
 *
 * @param {View | null | undefined} view
 * @returns {boolean}
 */
export function isVideoView(view) {
  return view?.stage === "RTSP";
}

/**
 * "0:07", "12:30", "1:02:03".
 *
 * @param {number} ms
 * @returns {string}
 */
export function formatElapsed(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/**
 * How long the telescope has been recording, between its reports: the telescope says
 * `lapse_ms` now and then (at start and stop, and on the server's poll), and the time since the
 * last report is added, on this browser's clock (no clock is compared with another).
 */
export class RecordingClock {
  /** The last `lapse_ms` reported, and when it arrived (ms, the caller's clock). */
  #lapseMs = 0;
  #at = 0;
  #active = false;

  /**
   * @param {Recording} recording the telemetry's recording section
   * @param {number} now ms, e.g. `performance.now()`
   */
  update(recording, now) {
    const lapse = recording.lapse_ms ?? 0;
    // A repeated report (another section changed) must not restart the count.
    if (lapse !== this.#lapseMs || recording.active !== this.#active) {
      this.#lapseMs = lapse;
      this.#at = now;
    }
    this.#active = recording.active;
  }

  /**
   * @param {number} now
   * @returns {number} ms recorded so far (or in all, once stopped)
   */
  elapsedMs(now) {
    return this.#lapseMs + (this.#active ? Math.max(0, now - this.#at) : 0);
  }
}

/**
 * The recording's line: running, saved, or nothing yet.
 *
 * @param {Recording} recording
 * @param {number} elapsedMs from a `RecordingClock`
 * @returns {string}
 */
export function recordingText(recording, elapsedMs) {
  const frames = recording.saved_frames;
  const count = frames == null ? "" : ` · ${frames} frame${frames === 1 ? "" : "s"}`;
  if (recording.active) return `Recording ${formatElapsed(elapsedMs)}${count}`;
  if (recording.state === "complete") {
    const saved = recording.file_saved === false ? "Recorded" : "Saved on the telescope";
    return `${saved}: ${formatElapsed(elapsedMs)}${count}`;
  }
  if (recording.state === "fail" || recording.state === "cancel") {
    return `The last recording ended (${recording.state})${count}.`;
  }
  return "Not recording.";
}

/**
 * How the telescope's video reaches this page: passed through as the telescope sent it, or
 * re-encoded (and why). Empty outside the video views, where the server encodes the previews.
 *
 * @param {Live} live
 * @param {TransportKind} transport what this page plays
 * @returns {{text: string, title: string, passthrough: boolean}}
 */
export function deliveryText(live, transport) {
  if (live.source !== "video") return { text: "", title: "", passthrough: false };
  if (transport === "mjpeg") {
    return {
      text: "Telescope video · decoded for MJPEG",
      title: "MJPEG carries JPEG pictures: the server decodes the telescope's H.264 for it.",
      passthrough: false,
    };
  }
  if (live.passthrough) {
    return {
      text: "Telescope H.264 · passed through",
      title: "WebRTC gets the telescope's own H.264, unchanged: nothing is re-encoded.",
      passthrough: true,
    };
  }
  const why = live.passthrough_refusal ?? "this stream cannot go to browsers unchanged";
  return {
    text: `Telescope video · re-encoded (${why})`,
    title: `The server re-encodes the telescope's video for WebRTC: ${why}.`,
    passthrough: false,
  };
}

/**
 * The stream's facts in one line: "H.264 High 4.0 · 1920×1080 · 30 fps · keyframe every 2 s ·
 * 4.2 Mbit/s"; whatever is not known yet is left out.
 *
 * @param {Live} live
 * @returns {string}
 */
export function streamFactsText(live) {
  if (live.source !== "video" || !live.codec) return "";
  const codec = live.codec === "h264" ? "H.264" : live.codec.toUpperCase();
  const parts = [[codec, live.profile, live.level].filter(Boolean).join(" ")];
  if (live.width && live.height) parts.push(`${live.width}×${live.height}`);
  if (live.frame_rate) parts.push(`${Math.round(live.frame_rate * 10) / 10} fps`);
  if (live.keyframe_interval_s) {
    parts.push(`keyframe every ${Math.round(live.keyframe_interval_s * 10) / 10} s`);
  }
  if (live.bitrate_bps) {
    parts.push(
      live.bitrate_bps >= 1e6
        ? `${(live.bitrate_bps / 1e6).toFixed(1)} Mbit/s`
        : `${Math.round(live.bitrate_bps / 1e3)} kbit/s`,
    );
  }
  return parts.join(" · ");
}
