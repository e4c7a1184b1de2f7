/**
 * The status panel: the telescope's state as telemetry reports it (link, target, position,
 * mount, battery, temperature, focuser, view) and the current operation with its progress.
 * It also says how old the figures are when updates stop coming.
 */

import { formatDeclination, formatDegrees, formatRightAscension } from "../lib/coordinates.js";
import { byTestId, setData, setText } from "./dom.js";
import { humanize, targetName } from "./labels.js";

/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */
/** @typedef {import('../services/telemetry.js').TelescopeDetail} TelescopeDetail */
/** @typedef {import('../types/protocol').TelescopeState} TelescopeState */
/** @typedef {import('../types/protocol').Operation} Operation */

/** Show "updated … ago" once the newest figures are older than this. */
const STALE_AFTER_MS = 5_000;

/** @type {Record<string, string>} */
const OPERATION_NAMES = {
  goto: "Go to",
  park: "Park",
  focus: "Focus",
  autofocus: "Autofocus",
  stack: "Stacking",
  move: "Move",
};

/** @type {Record<string, string>} */
const OPERATION_STATES = {
  start: "starting",
  working: "",
  complete: "done",
  fail: "failed",
  cancel: "stopped",
};

/** @type {Record<string, string>} */
const LINK_NAMES = {
  connected: "Connected",
  connecting: "Connecting…",
  reconnecting: "Reconnecting…",
  closed: "Disconnected",
};

/**
 * @param {TelescopeState} t
 * @returns {string}
 */
function motionText(t) {
  const { motion, parked } = t.mount;
  if (motion === "slewing") return "Slewing";
  if (motion === "moving") return "Moving";
  if (motion === "parking") return "Parking";
  return parked ? "Parked" : "Idle";
}

/**
 * @param {TelescopeState} t
 * @returns {string}
 */
function batteryText(t) {
  const { battery_percent: percent, charging, charger_status: status } = t.power;
  if (percent == null) return "—";
  const state = charging ? " · charging" : status === "Full" ? " · full" : "";
  return `${Math.round(percent)}%${state}`;
}

/**
 * @param {HTMLElement} root the status panel
 * @param {{telemetry: TelemetryService}} services
 */
export function mountStatusPanel(root, { telemetry }) {
  const $ = (/** @type {string} */ id) => byTestId(root, id, HTMLElement);
  const fields = {
    link: $("status-link"),
    model: $("status-model"),
    target: $("status-target"),
    ra: $("status-ra"),
    dec: $("status-dec"),
    alt: $("status-alt"),
    az: $("status-az"),
    motion: $("status-motion"),
    tracking: $("status-tracking"),
    battery: $("status-battery"),
    temperature: $("status-temperature"),
    focuser: $("status-focuser"),
    view: $("status-view"),
  };
  const updated = $("status-updated");
  const operation = $("operation");
  const operationKind = $("operation-kind");
  const operationMessage = $("operation-message");
  const progress = byTestId(root, "operation-progress", HTMLProgressElement);

  /** @param {TelescopeState} t */
  function render(t) {
    const link = t.connection.control;
    setText(fields.link, LINK_NAMES[link] ?? link);
    setData(fields.link, "tone", link === "connected" ? "ok" : link === "closed" ? "bad" : "warn");
    setText(fields.model, t.device.model ?? "—"); // null until the telescope has said
    setText(fields.target, targetName(t) ?? "—");
    setText(fields.ra, formatRightAscension(t.position.ra_hours));
    setText(fields.dec, formatDeclination(t.position.dec_deg));
    setText(fields.alt, formatDegrees(t.position.alt_deg));
    setText(fields.az, formatDegrees(t.position.az_deg));
    setText(fields.motion, motionText(t));
    setText(fields.tracking, t.mount.tracking == null ? "—" : t.mount.tracking ? "On" : "Off");
    setData(fields.tracking, "tone", t.mount.tracking ? "ok" : null);
    setText(fields.battery, batteryText(t));
    const low = t.power.battery_percent != null && t.power.battery_percent < 15;
    setData(fields.battery, "tone", low ? "bad" : null);
    const temperature = t.power.temperature_c;
    setText(fields.temperature, temperature == null ? "—" : `${temperature.toFixed(1)} °C`);
    const { position, max_step: max, moving } = t.focuser;
    const focus = position == null ? "—" : max ? `${position} / ${max}` : String(position);
    setText(fields.focuser, moving ? `${focus} (moving)` : focus);
    const mode = t.view.mode && t.view.mode !== "none" ? humanize(t.view.mode) : null;
    // The RTSP stage is the telescope's live video; its protocol's name says nothing to a user.
    const stageName = t.view.stage === "RTSP" ? "video" : t.view.stage;
    const stage = stageName ? ` · ${humanize(stageName).toLowerCase()}` : "";
    setText(fields.view, mode ? `${mode}${stage}` : "Not running");
    renderOperation(t.operation);
  }

  /** @param {Operation | null} op */
  function renderOperation(op) {
    setData(operation, "state", op ? op.state : "none");
    if (!op) {
      setText(operationKind, "No operation running");
      setText(operationMessage, "");
      progress.value = 0;
      return;
    }
    const name = OPERATION_NAMES[op.kind] ?? op.kind;
    const state = OPERATION_STATES[op.state] ?? op.state;
    setText(operationKind, state ? `${name} · ${state}` : name);
    const why = op.error && op.error !== op.message ? `: ${op.error}` : "";
    setText(operationMessage, op.message + why);
    if (op.progress == null) {
      // Unknown progress: an indeterminate bar while running, none once finished.
      if (op.state === "start" || op.state === "working") progress.removeAttribute("value");
      else progress.value = op.state === "complete" ? 1 : 0;
    } else {
      progress.value = op.progress;
    }
  }

  function renderStaleness() {
    const silence = telemetry.silenceMs();
    const stale = telemetry.telescope && telemetry.state !== "idle" && silence > STALE_AFTER_MS;
    setText(updated, stale ? `updated ${Math.round(silence / 1000)} s ago` : "");
  }

  telemetry.addEventListener("telescope", (event) => {
    render(/** @type {CustomEvent<TelescopeDetail>} */ (event).detail.telescope);
    renderStaleness();
  });
  setInterval(renderStaleness, 1_000);
}
