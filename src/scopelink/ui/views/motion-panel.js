/**
 * Moving the mount by hand: the direction pad (press and hold; see services/jog.js), its speed,
 * the stop button, tracking on/off, and park (after a confirmation).
 */

import { clearError, runCommand, showError } from "./command-feedback.js";
import { buttons, byTestId } from "./dom.js";

/** @typedef {import('../services/commands.js').CommandPort} CommandPort */
/** @typedef {import('../services/jog.js').JogController} JogController */
/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */
/** @typedef {import('../services/telemetry.js').TelescopeDetail} TelescopeDetail */
/** @typedef {import('../types/protocol').Direction} Direction */
/** @typedef {import('../types/protocol').Operation} Operation */

/** Arrow keys move the mount while the pad has focus. @type {Record<string, Direction>} */
const KEYS = { ArrowUp: "up", ArrowDown: "down", ArrowLeft: "left", ArrowRight: "right" };

/**
 * @param {HTMLElement} root the motion panel
 * @param {{commands: CommandPort, jog: JogController, telemetry: TelemetryService,
 *          telescopeId: () => string | null, parkDialog: HTMLDialogElement}} services
 */
export function mountMotionPanel(root, { commands, jog, telemetry, telescopeId, parkDialog }) {
  const pad = byTestId(root, "dpad", HTMLElement);
  const speed = byTestId(root, "move-speed", HTMLSelectElement);
  const stop = byTestId(root, "stop", HTMLButtonElement);
  const tracking = byTestId(root, "tracking-toggle", HTMLButtonElement);
  const park = byTestId(root, "park", HTMLButtonElement);
  const error = byTestId(root, "motion-error", HTMLElement);
  const arrows = buttons(pad, "[data-direction]");
  /** The park operation this panel started, to report its failure here. */
  let startedPark = /** @type {string | null} */ (null);

  /** @param {HTMLButtonElement} button */
  const directionOf = (button) => /** @type {Direction} */ (button.dataset.direction);

  /** @param {Direction} direction */
  function press(direction) {
    clearError(error);
    jog.press(direction, Number(speed.value));
  }

  for (const arrow of arrows) {
    arrow.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || arrow.closest("fieldset")?.disabled) return;
      // Capture: the release arrives here even if the finger slides off the button.
      arrow.setPointerCapture(event.pointerId);
      press(directionOf(arrow));
    });
    for (const end of ["pointerup", "pointercancel", "lostpointercapture"]) {
      arrow.addEventListener(end, () => void jog.release());
    }
    // A long press must not open the context menu (phones) and so cancel the pointer.
    arrow.addEventListener("contextmenu", (event) => event.preventDefault());
    arrow.addEventListener("keydown", (event) => {
      if ((event.key === " " || event.key === "Enter") && !event.repeat) {
        event.preventDefault();
        press(directionOf(arrow));
      }
    });
    arrow.addEventListener("keyup", (event) => {
      if (event.key === " " || event.key === "Enter") void jog.release();
    });
  }
  pad.addEventListener("keydown", (event) => {
    const direction = KEYS[event.key];
    if (!direction) return;
    event.preventDefault();
    if (!event.repeat) press(direction);
  });
  pad.addEventListener("keyup", (event) => {
    if (KEYS[event.key]) void jog.release();
  });
  // Losing the page (tab switch, phone lock) while holding must stop the mount now.
  window.addEventListener("blur", () => void jog.release());
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) void jog.release();
  });

  jog.addEventListener("statechange", () => {
    for (const arrow of arrows) {
      const held = jog.state === "moving" && directionOf(arrow) === jog.direction;
      arrow.setAttribute("aria-pressed", String(held));
    }
  });
  jog.addEventListener("error", (event) => {
    showError(error, /** @type {CustomEvent} */ (event).detail);
  });

  stop.addEventListener("click", async () => {
    const id = telescopeId();
    if (!id) return;
    await jog.release();
    await runCommand(stop, error, () => commands.send(id, { type: "stop" }));
  });

  tracking.addEventListener("click", async () => {
    const id = telescopeId();
    if (!id) return;
    const on = tracking.getAttribute("aria-checked") !== "true";
    const ack = await runCommand(tracking, error, () => commands.send(id, { type: "tracking", on }));
    if (ack) tracking.setAttribute("aria-checked", String(on));
  });

  park.addEventListener("click", () => {
    parkDialog.returnValue = "";
    parkDialog.showModal();
  });
  parkDialog.addEventListener("close", async () => {
    const id = telescopeId();
    if (parkDialog.returnValue !== "park" || !id) return;
    const ack = await runCommand(park, error, () => commands.send(id, { type: "park" }));
    startedPark = ack?.operation?.id ?? null;
  });

  telemetry.addEventListener("telescope", (event) => {
    const { telescope, changed } = /** @type {CustomEvent<TelescopeDetail>} */ (event).detail;
    if (changed.has("mount")) {
      tracking.setAttribute("aria-checked", String(Boolean(telescope.mount.tracking)));
    }
  });
  telemetry.addEventListener("operation", (event) => {
    const op = /** @type {CustomEvent<Operation>} */ (event).detail;
    if (op.id === startedPark && (op.state === "fail" || op.state === "cancel")) {
      showError(error, new Error(op.error ?? op.message));
    }
  });

  return {
    reset() {
      void jog.release();
      startedPark = null;
      clearError(error);
    },
  };
}
