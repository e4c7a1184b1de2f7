/**
 * The log: operations (when they start and end), firmware events, and the connection coming
 * and going; newest first, bounded. A run of the same event (a slew reports progress twice a
 * second) is one line with a count, showing its latest details.
 */

import { byTestId, create } from "./dom.js";

/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */
/** @typedef {import('../services/telemetry.js').FirmwareEvent} FirmwareEvent */
/** @typedef {import('../types/protocol').Operation} Operation */
/** @typedef {import('../services/telemetry.js').TelescopeDetail} TelescopeDetail */
/** @typedef {"info" | "ok" | "warn" | "error"} Level */

/** How an operation's state colours its log line. @type {Record<string, Level>} */
const LEVELS = { fail: "error", complete: "ok", cancel: "warn" };

export const MAX_LINES = 200;

/**
 * The details worth a log line, from a firmware event.
 *
 * @param {FirmwareEvent} event
 * @returns {string}
 */
export function describeEvent(event) {
  const parts = [event.Event ?? "event"];
  if (event.state) parts.push(String(event.state));
  const details = [];
  if (typeof event.dist_deg === "number") details.push(`${event.dist_deg.toFixed(1)}° to go`);
  if (typeof event.tracking === "boolean") {
    details.push(`tracking ${event.tracking ? "on" : "off"}`);
  }
  if (typeof event.target_name === "string" && event.target_name) details.push(event.target_name);
  if (typeof event.stage === "string" && event.stage) details.push(event.stage);
  if (typeof event.stacked_frame === "number") details.push(`${event.stacked_frame} stacked`);
  if (typeof event.position === "number") details.push(`at ${event.position}`);
  if (typeof event.error === "string" && event.error) details.push(event.error);
  return details.length ? `${parts.join(" ")} · ${details.join(", ")}` : parts.join(" ");
}

/**
 * @param {HTMLElement} root the log panel
 * @param {{telemetry: TelemetryService}} services
 */
export function mountEventLog(root, { telemetry }) {
  const list = byTestId(root, "event-log", HTMLOListElement);
  const clear = byTestId(root, "log-clear", HTMLButtonElement);
  /** The state each operation was last logged in, so progress updates do not flood the log. */
  const logged = new Map();
  /** @type {{key: string, item: HTMLLIElement, count: number} | null} */
  let last = null;

  /**
   * @param {string} text
   * @param {{level?: Level, source?: string, key?: string}} [options]
   *   `key`: lines with the same key in a row are merged
   */
  function add(text, { level = "info", source = "app", key } = {}) {
    const now = new Date();
    const time = create("time", "", now.toLocaleTimeString([], { hour12: false }));
    time.dateTime = now.toISOString();
    if (key && last?.key === key && list.firstElementChild === last.item) {
      last.count += 1;
      const count = create("span", "count", `×${last.count}`);
      last.item.querySelector(".text")?.replaceChildren(text, count);
      last.item.querySelector("time")?.replaceWith(time);
      return;
    }
    const item = create("li");
    item.dataset.level = level;
    item.dataset.source = source;
    item.dataset.testid = "log-line";
    item.append(time, create("span", "text", text));
    list.prepend(item);
    while (list.childElementCount > MAX_LINES) list.lastElementChild?.remove();
    last = key ? { key, item, count: 1 } : null;
  }

  telemetry.addEventListener("operation", (event) => {
    const op = /** @type {CustomEvent<Operation>} */ (event).detail;
    if (logged.get(op.id) === op.state) return;
    const first = !logged.has(op.id);
    logged.set(op.id, op.state);
    if (op.state === "working" && !first) return; // start → working says nothing new
    const target = op.target ? ` ${op.target}` : "";
    /** @type {Level} */
    const level = LEVELS[op.state] ?? "info";
    const why = op.error ? `: ${op.error}` : op.message ? ` — ${op.message}` : "";
    add(`${op.kind}${target} ${op.state}${why}`, { level, source: "operation" });
  });
  telemetry.addEventListener("event", (event) => {
    const raw = /** @type {CustomEvent<FirmwareEvent>} */ (event).detail;
    const level = raw.state === "fail" ? "error" : "info";
    add(describeEvent(raw), { level, source: "event", key: `${raw.Event}:${raw.state}` });
  });
  /** The telescope's link state last logged. */
  let link = /** @type {string | null} */ (null);
  telemetry.addEventListener("telescope", (event) => {
    const { telescope } = /** @type {CustomEvent<TelescopeDetail>} */ (event).detail;
    const { control: now, last_error: why } = telescope.connection;
    if (link !== null && now !== link) {
      const level = now === "connected" ? "ok" : "warn";
      add(`Telescope link ${now}${why && now !== "connected" ? `: ${why}` : ""}`, { level });
    }
    link = now;
  });
  telemetry.addEventListener("statechange", () => {
    const state = telemetry.state;
    if (state === "live") add("Connected to scopelink", { level: "ok", key: "sse:live" });
    else if (state === "reconnecting") {
      add("Lost the connection to scopelink; reconnecting", { level: "warn" });
    }
    else if (state === "offline") add("scopelink is unreachable; still trying", { level: "error" });
  });
  clear.addEventListener("click", () => {
    list.replaceChildren();
    last = null;
  });

  return {
    add,
    reset() {
      logged.clear();
      link = null;
    },
  };
}
