/**
 * How every control runs a command: the control shows it is busy while the request runs, and a
 * failure is shown next to it, in the words of the server's problem detail.
 */

import { ApiError } from "../services/api.js";

/**
 * The text to show for a failure.
 *
 * @param {unknown} error
 * @returns {string}
 */
export function describeError(error) {
  if (error instanceof ApiError) {
    const fields = error.fields.filter((f) => f.msg && !(error.detail ?? "").includes(f.msg));
    const extra = fields.map((f) => (f.field ? `${f.field}: ${f.msg}` : f.msg)).join("; ");
    const text = error.detail || error.title;
    return extra ? `${text} (${extra})` : text;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * @param {HTMLElement} slot the error element next to the control
 * @param {unknown} error
 */
export function showError(slot, error) {
  slot.textContent = describeError(error);
  slot.hidden = false;
}

/** @param {HTMLElement} slot */
export function clearError(slot) {
  slot.hidden = true;
  slot.textContent = "";
}

/**
 * Run `action` for `control`: busy meanwhile, the error (if any) shown in `slot`.
 *
 * @template T
 * @param {HTMLButtonElement | null} control
 * @param {HTMLElement} slot
 * @param {() => Promise<T>} action
 * @returns {Promise<T | null>} the result, or null when it failed (the error is shown)
 */
export async function runCommand(control, slot, action) {
  clearError(slot);
  if (control) {
    control.setAttribute("aria-busy", "true");
    control.disabled = true;
  }
  try {
    return await action();
  } catch (error) {
    showError(slot, error);
    return null;
  } finally {
    if (control) {
      control.removeAttribute("aria-busy");
      control.disabled = false;
    }
  }
}
