/**
 * The camera: view mode, stacking (with the frame count and the latest stacked image),
 * exposure and gain, the light-pollution filter and the dew heater.
 */

import { clearError, runCommand, showError } from "./command-feedback.js";
import { byTestId, setText } from "./dom.js";

/** @typedef {import('../services/api.js').ApiClient} ApiClient */
/** @typedef {import('../services/commands.js').CommandPort} CommandPort */
/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */
/** @typedef {import('../services/telemetry.js').TelescopeDetail} TelescopeDetail */
/** @typedef {import('../types/protocol').TelescopeState} TelescopeState */
/** @typedef {import('../types/protocol').ViewMode} ViewMode */
/** @typedef {import('../types/protocol').Operation} Operation */

/** A stacked image is fetched at most this often: it is large, and changes slowly. */
const STACK_REFRESH_MS = 5_000;

/**
 * The telescope's exposure settings (`settings.exp_ms`), as far as they are known.
 *
 * @param {TelescopeState} t
 * @returns {{continuous: number | null, stack: number | null}}
 */
function exposures(t) {
  const exp = /** @type {Record<string, unknown> | undefined} */ (t.settings.exp_ms);
  const number = (/** @type {unknown} */ v) => (typeof v === "number" ? v : null);
  return { continuous: number(exp?.continuous), stack: number(exp?.stack_l) };
}

/**
 * @param {HTMLElement} root the camera panel
 * @param {{api: ApiClient, commands: CommandPort, telemetry: TelemetryService,
 *   telescopeId: () => string | null, stackImages?: boolean}} services `stackImages`: whether
 *   the server has the latest stack as a picture (a broker does not: the count only)
 */
export function mountCameraPanel(
  root,
  { api, commands, telemetry, telescopeId, stackImages = true },
) {
  const $button = (/** @type {string} */ id) => byTestId(root, id, HTMLButtonElement);
  const $input = (/** @type {string} */ id) => byTestId(root, id, HTMLInputElement);
  const $slot = (/** @type {string} */ id) => byTestId(root, id, HTMLElement);
  const viewMode = byTestId(root, "view-mode", HTMLSelectElement);
  const viewStart = $button("view-start");
  const viewStop = $button("view-stop");
  const stackStart = $button("stack-start");
  const stackStop = $button("stack-stop");
  const stackCount = $slot("stack-count");
  const stackPreview = $slot("stack-preview");
  const stackImage = byTestId(root, "stack-image", HTMLImageElement);
  const stackLink = byTestId(root, "stack-link", HTMLAnchorElement);
  const stackCaption = $slot("stack-caption");
  const exposureForm = byTestId(root, "exposure-form", HTMLFormElement);
  const exposurePreview = $input("exposure-preview");
  const exposureStack = $input("exposure-stack");
  const gainForm = byTestId(root, "gain-form", HTMLFormElement);
  const gain = $input("gain");
  const lpFilter = $button("lp-filter");
  const dewHeater = $button("dew-heater");
  const errors = {
    view: $slot("view-error"),
    stack: $slot("stack-error"),
    exposure: $slot("exposure-error"),
    gain: $slot("gain-error"),
    switches: $slot("switches-error"),
  };
  let stacking = false;
  let stackShown = -1;
  let stackFetchedAt = 0;
  /** @type {ReturnType<typeof setTimeout> | null} */
  let stackTimer = null;
  const started = new Set();

  /**
   * @param {HTMLButtonElement | null} control
   * @param {HTMLElement} slot
   * @param {import('../types/protocol').Command} command
   */
  async function send(control, slot, command) {
    const id = telescopeId();
    if (!id) return null;
    const ack = await runCommand(control, slot, () => commands.send(id, command));
    if (ack?.operation) started.add(ack.operation.id);
    renderButtons();
    return ack;
  }

  viewStart.addEventListener("click", () => {
    const mode = /** @type {ViewMode} */ (viewMode.value);
    void send(viewStart, errors.view, { type: "start_view", mode });
  });
  viewStop.addEventListener("click", () => void send(viewStop, errors.view, { type: "stop_view" }));
  stackStart.addEventListener("click", () => void send(stackStart, errors.stack, { type: "start_stack" }));
  stackStop.addEventListener("click", () => void send(stackStop, errors.stack, { type: "stop_stack" }));

  exposureForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const continuous = exposurePreview.value ? Math.round(Number(exposurePreview.value)) : null;
    const stack = exposureStack.value ? Math.round(Number(exposureStack.value) * 1000) : null;
    if (continuous == null && stack == null) {
      showError(errors.exposure, new Error("Give a preview or a stacking exposure."));
      return;
    }
    const submit = byTestId(exposureForm, "exposure-set", HTMLButtonElement);
    void send(submit, errors.exposure, {
      type: "set_exposure",
      continuous_ms: continuous,
      stack_ms: stack,
    });
  });
  gainForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const submit = byTestId(gainForm, "gain-set", HTMLButtonElement);
    void send(submit, errors.gain, { type: "set_gain", gain: Math.round(Number(gain.value)) });
  });

  /**
   * @param {HTMLButtonElement} toggle
   * @param {"set_lp_filter" | "set_dew_heater"} type
   */
  function bindSwitch(toggle, type) {
    toggle.addEventListener("click", () => {
      const on = toggle.getAttribute("aria-checked") !== "true";
      // The switch shows what the telescope says (telemetry's `optics`), not what was asked.
      void send(toggle, errors.switches, { type, on });
    });
  }
  bindSwitch(lpFilter, "set_lp_filter");
  bindSwitch(dewHeater, "set_dew_heater");

  function renderButtons() {
    stackStart.disabled = stacking;
    stackStop.disabled = !stacking;
  }

  /** @param {number} stacked */
  function refreshStack(stacked) {
    const id = telescopeId();
    if (!stackImages || !id || stacked <= 0 || stacked === stackShown) return;
    const wait = stackFetchedAt + STACK_REFRESH_MS - performance.now();
    if (wait > 0) {
      stackTimer ??= setTimeout(() => {
        stackTimer = null;
        refreshStack(telemetry.telescope?.stack.stacked ?? 0);
      }, wait);
      return;
    }
    stackFetchedAt = performance.now();
    stackShown = stacked;
    // The query string defeats caches: each count is a different picture.
    const url = api.url(`/api/telescopes/${encodeURIComponent(id)}/stack.jpg`, { n: stacked });
    stackImage.src = api.url(`/api/telescopes/${encodeURIComponent(id)}/stack.jpg`, {
      n: stacked,
      width: 540,
    });
    stackLink.href = url;
    setText(stackCaption, `Latest stack: ${stacked} frames. Tap to open at full size.`);
  }
  stackImage.addEventListener("load", () => (stackPreview.hidden = false));
  stackImage.addEventListener("error", () => {
    stackShown = -1; // not there (yet): try again with the next count
  });

  telemetry.addEventListener("telescope", (event) => {
    const { telescope: t, changed } = /** @type {CustomEvent<TelescopeDetail>} */ (event).detail;
    if (changed.has("stack")) {
      stacking = t.stack.active;
      const { stacked, dropped } = t.stack;
      setText(
        stackCount,
        stacking || stacked
          ? `${stacked} frames stacked, ${dropped} dropped${stacking ? "" : " (stopped)"}`
          : "Not stacking.",
      );
      refreshStack(stacked);
      renderButtons();
    }
    if (changed.has("view") && t.view.mode && t.view.mode !== "none") {
      if ([...viewMode.options].some((o) => o.value === t.view.mode)) viewMode.value = t.view.mode;
    }
    if (changed.has("settings")) {
      // Fill the inputs with the telescope's values, unless the user is editing them.
      const exp = exposures(t);
      if (document.activeElement !== exposurePreview && exp.continuous != null) {
        exposurePreview.value = String(exp.continuous);
      }
      if (document.activeElement !== exposureStack && exp.stack != null) {
        exposureStack.value = String(exp.stack / 1000);
      }
      const g = t.settings.isp_gain;
      if (document.activeElement !== gain && typeof g === "number") gain.value = String(g);
    }
    if (changed.has("optics")) {
      const { lp_filter: lp, dew_heater: heater } = t.optics;
      if (typeof lp === "boolean") lpFilter.setAttribute("aria-checked", String(lp));
      if (typeof heater === "boolean") dewHeater.setAttribute("aria-checked", String(heater));
    }
  });
  telemetry.addEventListener("operation", (event) => {
    const op = /** @type {CustomEvent<Operation>} */ (event).detail;
    if (started.has(op.id) && op.state === "fail") {
      showError(errors.stack, new Error(op.error ?? op.message));
    }
  });

  return {
    reset() {
      stacking = false;
      stackShown = -1;
      stackPreview.hidden = true;
      started.clear();
      for (const slot of Object.values(errors)) clearError(slot);
      renderButtons();
    },
  };
}
