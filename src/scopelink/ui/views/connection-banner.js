/**
 * Honest connection state: the header pill says how the telemetry stream is doing, and a banner
 * says plainly when something is wrong: scopelink itself unreachable (stream down or requests
 * failing), or the telescope not answering scopelink. Both clear by themselves on recovery.
 */

import { ApiError } from "../services/api.js";
import { grantRefusal } from "../services/deployment.js";
import { setData, setText } from "./dom.js";

/** @typedef {import('../services/api.js').ApiClient} ApiClient */
/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */
/** @typedef {import('../services/telescopes.js').TelescopeList} TelescopeList */

/** @type {Record<string, string>} */
const PILL_TEXT = {
  idle: "No telescope",
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

/**
 * What the banner should say now, if anything.
 *
 * @param {{telemetry: TelemetryService, api: ApiClient, telescopes: TelescopeList}} services
 * @returns {{kind: "backend" | "telescope", text: string} | null}
 */
export function bannerMessage({ telemetry, api, telescopes }) {
  if (telemetry.state === "offline" || api.reachability === "unreachable") {
    return { kind: "backend", text: "scopelink is unreachable. Retrying…" };
  }
  if (telemetry.state === "reconnecting") {
    return { kind: "backend", text: "Lost the connection to scopelink. Reconnecting…" };
  }
  if (telescopes.state === "error" && telemetry.state === "idle") {
    if (telescopes.error instanceof ApiError && telescopes.error.status === 401) {
      // A server that needs a token (on a LAN, or a telescope-side proxy's own page).
      return {
        kind: "backend",
        text:
          grantRefusal !== null
            ? `The link from the broker was refused (${grantRefusal}); open it again there.`
            : "This scopelink needs an access token: open it with ?token=…, or from the broker.",
      };
    }
    return { kind: "backend", text: "Could not load the telescopes. Retrying…" };
  }
  const telescope = telemetry.telescope;
  if (!telescope || telemetry.state !== "live") return null;
  const link = telescope.connection.control;
  if (link === "connected") return null;
  const name = telescope.name || telescope.id;
  const why = telescope.connection.last_error ? ` (${telescope.connection.last_error})` : "";
  if (link === "connecting") return { kind: "telescope", text: `Connecting to ${name}…` };
  if (link === "reconnecting") {
    return { kind: "telescope", text: `${name} is not answering${why}. Reconnecting…` };
  }
  return { kind: "telescope", text: `${name} is disconnected${why}.` };
}

/**
 * @param {{banner: HTMLElement, pill: HTMLElement}} elements
 * @param {{telemetry: TelemetryService, api: ApiClient, telescopes: TelescopeList}} services
 */
export function mountConnectionBanner({ banner, pill }, services) {
  function render() {
    const state = services.telemetry.state;
    setData(pill, "state", state);
    setText(pill, PILL_TEXT[state] ?? state);
    const message = bannerMessage(services);
    banner.hidden = message === null;
    setData(banner, "kind", message?.kind ?? null);
    setText(banner, message?.text ?? "");
  }
  services.telemetry.addEventListener("statechange", render);
  services.telemetry.addEventListener("telescope", render);
  services.api.addEventListener("reachability", render);
  services.telescopes.addEventListener("statechange", render);
  render();
  return { render };
}
