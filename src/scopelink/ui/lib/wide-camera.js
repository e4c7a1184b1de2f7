/**
 * The S30's wide-angle camera as a picture-in-picture, in rules and words: whether the telescope
 * has one, whether the inset should stream now, and what its state badge says. No DOM here.
 */

/** @typedef {import('../types/protocol').Device["cameras"][number]} CameraName */
/** @typedef {"idle" | "connecting" | "playing" | "stalled" | "retrying"} LiveState */

/** JPEG width asked of the server: the inset is small, and a wide field needs few pixels. */
export const WIDE_INSET_WIDTH = 400;

/** The user's show/hide choice, remembered per browser (like the transport and the theme). */
export const WIDE_INSET_KEY = "scopelink.wide-inset";

/**
 * @param {readonly CameraName[] | null | undefined} cameras
 * @returns {boolean}
 */
export function hasWideCamera(cameras) {
  return cameras?.includes("wide") ?? false;
}

/**
 * The cameras the selected telescope has: telemetry's when it has arrived (it follows the model
 * the telescope reports on every connect), else the telescope list's, else none known.
 *
 * @param {{cameras: readonly CameraName[]} | null | undefined} device telemetry's `device`
 * @param {{cameras?: readonly CameraName[]} | null | undefined} summary the list's entry
 * @returns {readonly CameraName[]}
 */
export function camerasOf(device, summary) {
  return device?.cameras ?? summary?.cameras ?? [];
}

/**
 * Shown unless the user hid it: a new browser sees the inset where the model has the camera.
 *
 * @param {string | null | undefined} stored the remembered choice
 * @returns {boolean}
 */
export function insetShown(stored) {
  return stored !== "hidden";
}

/**
 * Stream the wide camera only while someone can see it: a telescope with one is selected, the
 * inset is shown and the page is visible. Otherwise nothing is requested from that camera.
 *
 * @param {{telescopeId: string | null, cameras: readonly CameraName[], shown: boolean,
 *          pageHidden: boolean}} facts
 * @returns {boolean}
 */
export function shouldStreamWide({ telescopeId, cameras, shown, pageHidden }) {
  return telescopeId !== null && hasWideCamera(cameras) && shown && !pageHidden;
}

/** @type {Record<LiveState, string>} */
const STATE_TEXT = {
  idle: "Wide",
  connecting: "Wide · connecting…",
  playing: "Wide · live",
  stalled: "Wide · no picture",
  retrying: "Wide · no picture, reconnecting…",
};

/**
 * The inset's badge: which camera and whether its picture is current.
 *
 * @param {LiveState} state the inset transport's state
 * @returns {string}
 */
export function insetStateText(state) {
  return STATE_TEXT[state] ?? `Wide · ${state}`;
}
