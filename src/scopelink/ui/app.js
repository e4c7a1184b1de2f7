/**
 * The entry point: creates the services, mounts the views on the page, and wires them together.
 * Nothing else happens here; each module owns one job (docs/ui.md draws the picture).
 */

import { Backoff } from "./lib/backoff.js";
import { chooseTransport, parseTier, parseVideoCodec } from "./lib/live-quality.js";
import { WIDE_INSET_WIDTH } from "./lib/wide-camera.js";
import { ApiClient } from "./services/api.js";
import { CatalogueSearch } from "./services/catalogue-search.js";
import {
  ChannelLink,
  PreferredCommands,
  PreferredStatus,
  tabClientId,
} from "./services/channel-link.js";
import { CommandPort, RestCommands } from "./services/commands.js";
import { JogController } from "./services/jog.js";
import { LiveSwitch } from "./services/live-switch.js";
import { MjpegTransport } from "./services/mjpeg.js";
import { SseStatus, TelemetryService } from "./services/telemetry.js";
import { TelescopeList } from "./services/telescopes.js";
import { WebRtcTransport } from "./services/webrtc.js";
import { mountCameraPanel } from "./views/camera-panel.js";
import { mountCommandGate } from "./views/command-gate.js";
import { mountConnectionBanner } from "./views/connection-banner.js";
import { mountCommandQueue } from "./views/command-queue.js";
import { mountControlPanel } from "./views/control-panel.js";
import { byTestId } from "./views/dom.js";
import { mountEventLog } from "./views/event-log.js";
import { mountFocusPanel } from "./views/focus-panel.js";
import { mountGotoPanel } from "./views/goto-panel.js";
import { mountLiveView } from "./views/live-view.js";
import { mountMotionPanel } from "./views/motion-panel.js";
import { mountNightMode } from "./views/night-mode.js";
import { mountStatusPanel } from "./views/status-panel.js";
import { mountTelescopeSelector } from "./views/telescope-selector.js";
import { mountVideoPanel } from "./views/video-panel.js";
import { mountWideInset } from "./views/wide-inset.js";

/** @typedef {import('./lib/live-quality.js').TransportKind} TransportKind */
/** @typedef {import('./types/protocol').Role} Role */

const TOKEN_KEY = "scopelink.token";
/** The user's choice of live transport (the toggle), remembered per browser. */
const TRANSPORT_KEY = "scopelink.transport";

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
 * The live-view transport: WebRTC where the browser has it and the flag allows it, MJPEG
 * otherwise and as the fallback (services/live-switch.js). The flag: `?transport=webrtc|mjpeg`,
 * else the toggle's remembered choice, else the deployment default (`/api/session`'s
 * `webrtc_default`, applied once the session is known). `?ice=relay` forces TURN (tests);
 * `?codec=h264|vp8` offers only that video codec; `?tier=reduced` asks for the reduced tier
 * (a slow device: 540 wide, its bitrate still adapts; docs/benchmarks.md, "30 fps").
 *
 * @param {ApiClient} api
 * @param {ChannelLink} link the data channel rides the WebRTC peer connection
 * @returns {LiveSwitch}
 */
function createTransport(api, link) {
  const params = new URLSearchParams(location.search);
  /** @type {import('./services/webrtc.js').WebRtcOptions} */
  const options = {
    iceTransportPolicy: params.get("ice") === "relay" ? "relay" : "all",
    codec: parseVideoCodec(params.get("codec")),
    tier: parseTier(params.get("tier")),
    channels: link,
  };
  const live = new LiveSwitch({
    mjpeg: () => new MjpegTransport(api),
    webrtc: WebRtcTransport.supported ? () => new WebRtcTransport(api, options) : null,
  });
  live.prefer(transportChoice(null));
  return live;
}

/**
 * @param {boolean | null | undefined} deploymentDefault
 * @returns {TransportKind}
 */
function transportChoice(deploymentDefault) {
  let stored = null;
  try {
    stored = localStorage.getItem(TRANSPORT_KEY);
  } catch {
    // storage disabled: no remembered choice
  }
  return chooseTransport({
    supported: WebRtcTransport.supported,
    urlParam: new URLSearchParams(location.search).get("transport"),
    stored,
    deploymentDefault,
  });
}

/** @param {TransportKind} kind */
function rememberTransport(kind) {
  try {
    localStorage.setItem(TRANSPORT_KEY, kind);
  } catch {
    // storage disabled: the choice lasts for this page
  }
}

const api = new ApiClient({ token: accessToken() });
// The one status source (services/telemetry.js).
const clientId = tabClientId();
// Commands and status over the WebRTC data channel while it is open; REST and SSE otherwise.
// `?datachannel=off`: never (REST and SSE only, e.g. to compare them: bench/bench_commands.py).
const channelsOn = new URLSearchParams(location.search).get("datachannel") !== "off";
const link = new ChannelLink({ clientId, api, enabled: channelsOn });
const telemetry = new TelemetryService(new PreferredStatus(link, new SseStatus(api)));
const telescopes = new TelescopeList(api);
const transport = createTransport(api, link);
// The S30's wide camera: MJPEG only (WebRTC carries the main camera), small, in the inset.
const wide = new MjpegTransport(api, { camera: "wide", width: WIDE_INSET_WIDTH });
const search = new CatalogueSearch(api);
// Every command goes through this port; REST carries it (services/commands.js).
// A request that gets no answer gives up sooner while the status stream says we are offline.
const rest = new RestCommands(api, { clientId, connected: () => telemetry.state === "live" });
const commands = new CommandPort(new PreferredCommands(link, rest));
const jog = new JogController(commands, () => telescopes.selectedId);
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
const live = mountLiveView(byTestId(page, "live-view", HTMLElement), {
  transport,
  telemetry,
  switcher: transport,
  onChoose: rememberTransport,
});
const wideInset = mountWideInset(byTestId(page, "live-view", HTMLElement), {
  transport: wide,
  telemetry,
  telescopes,
});
mountStatusPanel(byTestId(page, "status-panel", HTMLElement), { telemetry });
const panels = [
  mountGotoPanel(byTestId(page, "goto-panel", HTMLElement), {
    commands,
    search,
    telemetry,
    telescopeId,
  }),
  mountMotionPanel(byTestId(page, "motion-panel", HTMLElement), {
    commands,
    jog,
    telemetry,
    telescopeId,
    parkDialog,
  }),
  mountFocusPanel(byTestId(page, "focus-panel", HTMLElement), {
    commands,
    telemetry,
    telescopeId,
  }),
  mountCameraPanel(byTestId(page, "camera-panel", HTMLElement), {
    api,
    commands,
    telemetry,
    telescopeId,
  }),
  mountVideoPanel(byTestId(page, "video-panel", HTMLElement), {
    commands,
    telemetry,
    telescopeId,
  }),
  mountEventLog(byTestId(page, "log-panel", HTMLElement), { telemetry }),
];
const gate = mountCommandGate(
  /** @type {NodeListOf<HTMLFieldSetElement>} */ (document.querySelectorAll("fieldset.commands")),
  { telemetry, canCommand: () => role === "operator" },
);

const control = mountControlPanel(byTestId(page, "control", HTMLElement), { link, telescopeId });
mountCommandQueue(byTestId(page, "command-queue", HTMLElement), { commands });
// Commands given while the server could not be reached go when it can be again.
api.addEventListener("reachability", (event) => {
  if (/** @type {CustomEvent<string>} */ (event).detail === "reachable") void commands.flush();
});
telemetry.addEventListener("statechange", () => {
  if (telemetry.state === "live") void commands.flush();
});
link.addEventListener("statechange", () => void commands.flush());

/**
 * While the live view carries no data channel (MJPEG, chosen or fallen back to; a hidden page,
 * whose video stops), a connection of data channels only carries commands and status; the
 * WebRTC live view's own connection carries them otherwise.
 */
function followChannel() {
  const id = telescopes.selectedId;
  const videoCarries = transport.kind === "webrtc" && !document.hidden;
  link.standalone(id && !videoCarries ? id : null);
}
transport.addEventListener("switch", followChannel);
document.addEventListener("visibilitychange", followChannel);

telescopes.addEventListener("select", () => {
  control.follow();
  const id = telescopes.selectedId;
  for (const panel of panels) panel.reset();
  if (id) telemetry.start(id);
  else telemetry.stop();
  live.show(id);
  wideInset.show(id);
  followChannel();
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
    const kind = transportChoice(session.webrtc_default ?? true);
    if (kind !== transport.preferred) transport.prefer(kind);
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
    wide,
    link,
    commands,
    /** @returns {import('./lib/framestamp.js').FrameStamp | null} */
    readFrameStamp: () => transport.readFrameStamp(),
  }),
});
