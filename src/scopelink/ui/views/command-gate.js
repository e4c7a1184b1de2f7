/**
 * Commands are offered only when they can work: the controls are disabled (with the reason in
 * their title) while the telescope's control link is down or this page may only watch.
 */

/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */

/**
 * @param {Iterable<HTMLFieldSetElement>} fieldsets every group of command controls
 * @param {{telemetry: TelemetryService, watchOnly: () => string | null}} services
 *   `watchOnly`: why this page may not command now (its role; behind a broker, no telescope
 *   connected), or null when it may
 */
export function mountCommandGate(fieldsets, { telemetry, watchOnly }) {
  const groups = [...fieldsets];

  function render() {
    const link = telemetry.telescope?.connection.control;
    const reason =
      watchOnly() ??
      (!telemetry.telescope
        ? "No telescope yet."
        : link !== "connected"
          ? "The telescope is not connected."
          : null);
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
