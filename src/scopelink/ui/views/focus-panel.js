/**
 * Focus: steps in and out (small and large), the position, and autofocus, which becomes
 * "Stop autofocus" while it runs.
 */

import { clearError, runCommand, showError } from "./command-feedback.js";
import { buttons, byTestId, setText } from "./dom.js";

/** @typedef {import('../services/commands.js').CommandPort} CommandPort */
/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */
/** @typedef {import('../services/telemetry.js').TelescopeDetail} TelescopeDetail */
/** @typedef {import('../types/protocol').Operation} Operation */

/**
 * @param {HTMLElement} root the focus panel
 * @param {{commands: CommandPort, telemetry: TelemetryService, telescopeId: () => string | null}} services
 */
export function mountFocusPanel(root, { commands, telemetry, telescopeId }) {
  const position = byTestId(root, "focus-position", HTMLOutputElement);
  const autofocus = byTestId(root, "autofocus", HTMLButtonElement);
  const error = byTestId(root, "focus-error", HTMLElement);
  let autofocusRunning = false;
  /** Operations this panel started, to report their failures here. */
  const started = new Set();

  for (const step of buttons(root, "[data-delta]")) {
    step.addEventListener("click", async () => {
      const id = telescopeId();
      if (!id) return;
      const delta = Number(step.dataset.delta);
      const ack = await runCommand(step, error, () => commands.send(id, { type: "focus", delta }));
      if (ack?.operation) started.add(ack.operation.id);
    });
  }

  autofocus.addEventListener("click", async () => {
    const id = telescopeId();
    if (!id) return;
    const ack = await runCommand(autofocus, error, () =>
      commands.send(id, { type: autofocusRunning ? "stop_autofocus" : "autofocus" }),
    );
    if (ack?.operation) started.add(ack.operation.id);
    render();
  });

  function render() {
    setText(autofocus, autofocusRunning ? "Stop autofocus" : "Autofocus");
    autofocus.classList.toggle("danger-outline", autofocusRunning);
  }

  telemetry.addEventListener("telescope", (event) => {
    const { telescope, changed } = /** @type {CustomEvent<TelescopeDetail>} */ (event).detail;
    if (changed.has("focuser")) {
      const { position: step, moving } = telescope.focuser;
      setText(position, step == null ? "—" : moving ? `${step}…` : String(step));
    }
    const op = telescope.operation;
    if (changed.has("operation") && op?.kind === "autofocus") {
      autofocusRunning = op.state === "start" || op.state === "working";
      render();
    }
  });
  telemetry.addEventListener("operation", (event) => {
    const op = /** @type {CustomEvent<Operation>} */ (event).detail;
    const finished = op.state === "fail" || op.state === "complete" || op.state === "cancel";
    if (started.has(op.id) && finished) {
      started.delete(op.id);
      if (op.state === "fail") showError(error, new Error(op.error ?? op.message));
    }
  });

  return {
    reset() {
      autofocusRunning = false;
      started.clear();
      clearError(error);
      render();
    },
  };
}
