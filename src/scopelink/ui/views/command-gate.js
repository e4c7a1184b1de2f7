/**
 * Commands are offered only when they can work: the controls are disabled (with the reason in
 * their title) while the telescope's control link is down or this page may only watch.
 */

/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */

/**
 * @param {Iterable<HTMLFieldSetElement>} fieldsets every group of command controls
 * @param {{telemetry: TelemetryService, canCommand: () => boolean}} services
 *   `canCommand`: whether this session's role may command at all
 */
export function mountCommandGate(fieldsets, { telemetry, canCommand }) {
  const groups = [...fieldsets];

  function render() {
    const link = telemetry.telescope?.connection.control;
    let reason = null;
    if (!canCommand()) reason = "This session may watch but not command the telescope.";
    else if (!telemetry.telescope) reason = "No telescope yet.";
    else if (link !== "connected") reason = "The telescope is not connected.";
    for (const group of groups) {
      group.disabled = reason !== null;
      group.title = reason ?? "";
    }
  }
  telemetry.addEventListener("telescope", render);
  telemetry.addEventListener("statechange", render);
  render();
  return { render };
}
