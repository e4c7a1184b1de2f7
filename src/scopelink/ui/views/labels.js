/**
 * How the UI words what the telescope reports, shared by the views that show it.
 */

/** @typedef {import('../types/protocol').TelescopeState} TelescopeState */

/**
 * "ContinuousExposure" → "Continuous exposure": firmware names, readable.
 *
 * @param {string} name
 * @returns {string}
 */
export function humanize(name) {
  const words = name.replace(/_/g, " ").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/**
 * What the telescope is pointed at: the view's target, else the running (or last) goto's.
 *
 * @param {TelescopeState} t
 * @returns {string | null}
 */
export function targetName(t) {
  if (t.view.target_name) return t.view.target_name;
  const op = t.operation;
  return op && op.kind === "goto" && op.state !== "fail" ? op.target : null;
}
