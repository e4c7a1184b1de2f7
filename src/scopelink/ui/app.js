/**
 * The entry point: learns which server the page is on (services/deployment.js), creates the
 * services that server's transports allow (lib/deployment.js: decided there, once), mounts the
 * views and wires them together. What only `scopelink serve` has (its telescope list, the wide
 * camera, the transport toggle) is wired in serve-mode.js; what only a broker has (accounts,
 * pairing, members, the path through the broker) in broker-mode.js. Nothing else happens here;
 * each module owns one job (docs/ui.md draws the picture).
 */

import { Backoff } from "./lib/backoff.js";
import { transportPlan } from "./lib/deployment.js";
import { chooseTransport, parseTier, parseVideoCodec } from "./lib/live-quality.js";
import { BrokerMode } from "./broker-mode.js";
import { ServeMode } from "./serve-mode.js";
import { ApiClient } from "./services/api.js";
import { CatalogueSearch } from "./services/catalogue-search.js";
import {
  ChannelLink,
  NoCommandRoute,
  NoStatusRoute,
  PreferredCommands,
  PreferredStatus,
  tabClientId,
} from "./services/channel-link.js";
import { CommandPort, RestCommands } from "./services/commands.js";
import { detectDeployment } from "./services/deployment.js";
import { JogController } from "./services/jog.js";
import { LiveSwitch } from "./services/live-switch.js";
import { MjpegTransport } from "./services/mjpeg.js";
import { SseStatus, TelemetryService } from "./services/telemetry.js";
import { WebRtcTransport } from "./services/webrtc.js";
import { mountCameraPanel } from "./views/camera-panel.js";
import { mountCommandGate } from "./views/command-gate.js";
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
import { mountVideoPanel } from "./views/video-panel.js";

/** @typedef {import('./lib/live-quality.js').TransportKind} TransportKind */
/** @typedef {import('./lib/deployment.js').TransportPlan} TransportPlan */
/** @typedef {import('./services/deployment.js').Deployment} Deployment */

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
 * Which server this is, asked until it answers; meanwhile the banner says it cannot be reached.
 *
 * @param {ApiClient} api
 * @param {HTMLElement} banner
 * @returns {Promise<Deployment>}
 */
async function detect(api, banner) {
  const backoff = new Backoff({ initialMs: 1_000, maximumMs: 10_000 });
  for (;;) {
    try {
      const deployment = await detectDeployment(api);
      banner.hidden = true;
      return deployment;
    } catch {
      if (api.reachability === "unreachable") {
        banner.dataset.kind = "backend";
        banner.textContent = "scopelink is unreachable. Retrying…";
        banner.hidden = false;
      }
      await new Promise((resolve) => setTimeout(resolve, backoff.next()));
    }
  }
}

/**
 * The live-view transport. On `serve`: WebRTC where the browser has it and the flag allows it,
 * MJPEG otherwise and as the fallback (services/live-switch.js). The flag: `?transport=webrtc|
 * mjpeg`, else the toggle's remembered choice, else the deployment default (`/api/session`'s
 * `webrtc_default`). Behind a broker (no MJPEG): WebRTC alone, with no fallback to offer.
 * `?ice=relay` forces TURN (tests); `?codec=h264|vp8` offers only that video codec;
 * `?tier=reduced` asks for the reduced tier (a slow device: 540 wide, its bitrate still adapts;
 * docs/benchmarks.md, "30 fps").
 *
 * @param {ApiClient} api
 * @param {ChannelLink} link the data channel rides the WebRTC peer connection
 * @param {TransportPlan} plan
 * @param {boolean} webrtcDefault
 * @returns {LiveSwitch | WebRtcTransport}
 */
function createTransport(api, link, plan, webrtcDefault) {
  const params = new URLSearchParams(location.search);
  /** @type {import('./services/webrtc.js').WebRtcOptions} */
  const options = {
    iceTransportPolicy: params.get("ice") === "relay" ? "relay" : "all",
    codec: parseVideoCodec(params.get("codec")),
    tier: parseTier(params.get("tier")),
    channels: link,
  };
  if (!plan.mjpeg) return new WebRtcTransport(api, options);
  const live = new LiveSwitch({
    mjpeg: () => new MjpegTransport(api),
    webrtc: WebRtcTransport.supported ? () => new WebRtcTransport(api, options) : null,
  });
  live.prefer(transportChoice(webrtcDefault));
  return live;
}

/**
 * @param {boolean} deploymentDefault
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

const page = document.body;
const api = new ApiClient({ token: accessToken() });
const banner = byTestId(page, "connection-banner", HTMLElement);
const deployment = await detect(api, banner);

const plan = transportPlan(deployment.kind);
page.dataset.mode = deployment.kind;

const clientId = tabClientId();
// Commands and status over the WebRTC data channel while it is open; REST and SSE otherwise
// where the server has them. `?datachannel=off` (serve only: a broker has no other path): never,
// REST and SSE only, e.g. to compare them (bench/bench_commands.py).
const channelsOn = !plan.rest || new URLSearchParams(location.search).get("datachannel") !== "off";
const link = new ChannelLink({ clientId, api, enabled: channelsOn });
// The one status source (services/telemetry.js).
const telemetry = new TelemetryService(
  new PreferredStatus(link, plan.sse ? new SseStatus(api) : new NoStatusRoute()),
);
// Every command goes through this port (services/commands.js). A REST request that gets no
// answer gives up sooner while the status stream says we are offline; with no REST, a command
// waits for the channel in the port's queue.
const route = plan.rest
  ? new RestCommands(api, { clientId, connected: () => telemetry.state === "live" })
  : new NoCommandRoute("the data channel to the telescope is not open");
const commands = new CommandPort(new PreferredCommands(link, route));
const search = plan.catalogue
  ? new CatalogueSearch(api, { atSite: deployment.kind === "serve" })
  : null;
const webrtcDefault =
  deployment.kind === "serve" ? (deployment.session.webrtc_default ?? true) : true;
const transport = createTransport(api, link, plan, webrtcDefault);
const switcher = transport instanceof LiveSwitch ? transport : null;

/** @type {ServeMode | BrokerMode} */
let mode;
if (deployment.kind === "broker") {
  if (!(transport instanceof WebRtcTransport)) throw new Error("a broker carries WebRTC only");
  mode = new BrokerMode({ api, about: deployment.about, video: transport, link });
} else {
  mode = new ServeMode({ api, session: deployment.session, plan });
}
const selection = mode.selection;
const jog = new JogController(commands, () => selection.selectedId);
const telescopeId = () => selection.selectedId;
const parkDialog = byTestId(page, "park-dialog", HTMLDialogElement);

mountNightMode(byTestId(page, "night-mode", HTMLButtonElement));
const live = mountLiveView(byTestId(page, "live-view", HTMLElement), {
  transport,
  telemetry,
  switcher,
  onChoose: rememberTransport,
  noTelescopeText: () => mode.noTelescopeText(),
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
    stackImages: plan.stackImages,
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
  { telemetry, watchOnly: () => mode.watchOnly() },
);

const control = mountControlPanel(byTestId(page, "control", HTMLElement), { link, telescopeId });
mountCommandQueue(byTestId(page, "command-queue", HTMLElement), {
  commands,
  unreachable: plan.rest ? "scopelink" : "the telescope",
});
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
  const id = selection.selectedId;
  const videoCarries = (switcher ? switcher.kind === "webrtc" : true) && !document.hidden;
  link.standalone(id && !videoCarries ? id : null);
}
switcher?.addEventListener("switch", followChannel);
document.addEventListener("visibilitychange", followChannel);

mode.mount(page, { telemetry, live, gate, link });

selection.addEventListener("select", () => {
  control.follow();
  const id = selection.selectedId;
  for (const panel of panels) panel.reset();
  if (id) telemetry.start(id);
  else telemetry.stop();
  live.show(id);
  followChannel();
  gate.render();
});
// Telemetry arriving proves the backend answers, whatever a failed request said before it.
telemetry.addEventListener("telescope", () => {
  if (api.reachability === "unreachable") api.confirmReachable();
});
telemetry.addEventListener("statechange", () => {
  if (telemetry.state === "live") api.confirmReachable();
});

mode.start();

// A hook for tests and benchmarks (docs/ui.md): read the frame stamp of the picture shown now.
Object.defineProperty(window, "scopelink", {
  value: Object.freeze({
    api,
    telemetry,
    transport,
    link,
    commands,
    deployment: deployment.kind,
    ...mode.hooks,
    /** @returns {import('./lib/framestamp.js').FrameStamp | null} */
    readFrameStamp: () => transport.readFrameStamp(),
  }),
});
