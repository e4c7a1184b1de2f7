/**
 * The entry point: creates the services, mounts the views on the page, and wires them together.
 * Nothing else happens here; each module owns one job (docs/ui.md draws the picture).
 */

import { Backoff } from "./lib/backoff.js";
import { ApiClient } from "./services/api.js";
import { CatalogueSearch } from "./services/catalogue-search.js";
import { JogController } from "./services/jog.js";
import { MjpegTransport } from "./services/mjpeg.js";
import { TelemetryService } from "./services/telemetry.js";
import { TelescopeList } from "./services/telescopes.js";
import { mountCameraPanel } from "./views/camera-panel.js";
import { mountCommandGate } from "./views/command-gate.js";
import { mountConnectionBanner } from "./views/connection-banner.js";
import { byTestId } from "./views/dom.js";
import { mountEventLog } from "./views/event-log.js";
import { mountFocusPanel } from "./views/focus-panel.js";
import { mountGotoPanel } from "./views/goto-panel.js";
import { mountLiveView } from "./views/live-view.js";
import { mountMotionPanel } from "./views/motion-panel.js";
import { mountNightMode } from "./views/night-mode.js";
import { mountStatusPanel } from "./views/status-panel.js";
import { mountTelescopeSelector } from "./views/telescope-selector.js";

/** @typedef {import('./services/live-transport.js').LiveTransport} LiveTransport */
/** @typedef {import('./types/protocol').Role} Role */

const TOKEN_KEY = "scopelink.token";

/**
 * The access token, if the server needs one: taken from `?token=` once, then kept for this tab
 * and removed from the address bar (so it is not bookmarked or shared by accident).
 *
 * @returns {string | null}
 */
function accessToken() {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (given) {
    sessionStorage.setItem(TOKEN_KEY, given);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

/**
 * The live-view transport. WebRTC (services/webrtc.js, next) goes here: prefer it where the
 * browser supports it and fall back to MJPEG, behind the same LiveTransport interface.
 *
 * @param {ApiClient} api
 * @returns {LiveTransport}
 */
function createTransport(api) {
  return new MjpegTransport(api);
}

const api = new ApiClient({ token: accessToken() });
const telemetry = new TelemetryService(api);
const telescopes = new TelescopeList(api);
const transport = createTransport(api);
const search = new CatalogueSearch(api);
const jog = new JogController(api, () => telescopes.selectedId);
/** @type {Role} */
let role = "operator";

const page = document.body;
const telescopeId = () => telescopes.selectedId;
const parkDialog = byTestId(page, "park-dialog", HTMLDialogElement);

mountNightMode(byTestId(page, "night-mode", HTMLButtonElement));
mountConnectionBanner(
  {
    banner: byTestId(page, "connection-banner", HTMLElement),
    pill: byTestId(page, "connection-pill", HTMLElement),
  },
  { telemetry, api, telescopes },
);
mountTelescopeSelector(
  {
    select: byTestId(page, "telescope-select", HTMLSelectElement),
    manage: byTestId(page, "telescopes-manage", HTMLButtonElement),
    dialog: byTestId(page, "telescopes-dialog", HTMLDialogElement),
  },
  { telescopes },
);
const live = mountLiveView(byTestId(page, "live-view", HTMLElement), { transport, telemetry });
mountStatusPanel(byTestId(page, "status-panel", HTMLElement), { telemetry });
const panels = [
  mountGotoPanel(byTestId(page, "goto-panel", HTMLElement), {
    api,
    search,
    telemetry,
    telescopeId,
  }),
  mountMotionPanel(byTestId(page, "motion-panel", HTMLElement), {
    api,
    jog,
    telemetry,
    telescopeId,
    parkDialog,
  }),
  mountFocusPanel(byTestId(page, "focus-panel", HTMLElement), { api, telemetry, telescopeId }),
  mountCameraPanel(byTestId(page, "camera-panel", HTMLElement), { api, telemetry, telescopeId }),
  mountEventLog(byTestId(page, "log-panel", HTMLElement), { telemetry }),
];
const gate = mountCommandGate(
  /** @type {NodeListOf<HTMLFieldSetElement>} */ (document.querySelectorAll("fieldset.commands")),
  { telemetry, canCommand: () => role === "operator" },
);

telescopes.addEventListener("select", () => {
  const id = telescopes.selectedId;
  for (const panel of panels) panel.reset();
  if (id) telemetry.start(id);
  else telemetry.stop();
  live.show(id);
  gate.render();
});

// Telemetry arriving proves the backend answers, whatever a failed request said before it.
telemetry.addEventListener("telescope", () => {
  if (api.reachability === "unreachable") api.confirmReachable();
});
telemetry.addEventListener("statechange", () => {
  if (telemetry.state === "live") {
    api.confirmReachable();
    if (telescopes.state === "error") void telescopes.refresh().catch(() => undefined);
  }
  // Offline for a while: perhaps the telescope was removed, or the server restarted without
  // it. A fresh list moves the selection on if it is gone.
  if (telemetry.state === "offline") void telescopes.refresh().catch(() => undefined);
});

const startup = new Backoff({ initialMs: 1_000, maximumMs: 10_000 });

/** Learn the session's role and the telescopes; retried until the backend answers. */
async function load() {
  try {
    const session = await api.session();
    role = session.role;
    await telescopes.refresh();
    gate.render();
  } catch {
    setTimeout(load, startup.next());
  }
}
void load();

// A hook for tests and benchmarks (docs/ui.md): read the frame stamp of the picture shown now.
Object.defineProperty(window, "scopelink", {
  value: Object.freeze({
    api,
    telemetry,
    telescopes,
    transport,
    /** @returns {import('./lib/framestamp.js').FrameStamp | null} */
    readFrameStamp: () => transport.readFrameStamp(),
  }),
});
