/**
 * The page on a broker (`scopelink broker`), which carries signaling only: sign in, the
 * telescopes the account may use (role, online or not), pairing one by its proxy's code,
 * invitations and members for an owner; and the path to the telescope chosen: the signaling
 * socket through the broker to its proxy, then WebRTC (video and the data channels) peer to
 * peer, said honestly at every step (services/remote-link.js). There is no REST, SSE or MJPEG
 * on a broker: app.js builds the live view on WebRTC alone and commands and status on the data
 * channel alone (lib/deployment.js); this module wires what only a broker has.
 */

import { BrokerAccount } from "./services/account.js";
import { BrokerApi } from "./services/broker-api.js";
import { RemoteLink } from "./services/remote-link.js";
import { WebRtcTransport } from "./services/webrtc.js";
import { mountBrokerAccount } from "./views/broker-account.js";
import { mountBrokerTelescopes, roleSentence } from "./views/broker-telescopes.js";
import { byTestId } from "./views/dom.js";
import { describeRemote, mountRemoteStatus } from "./views/remote-status.js";
import { mountTelescopeMembers } from "./views/telescope-members.js";

/** @typedef {import('./services/api.js').ApiClient} ApiClient */
/** @typedef {import('./services/channel-link.js').ChannelLink} ChannelLink */
/** @typedef {import('./types/protocol').BrokerAbout} BrokerAbout */
/** @typedef {import('./types/protocol').TelescopeRole} TelescopeRole */

/**
 * What app.js hands this mode once the shared views are mounted.
 *
 * @typedef {object} SharedParts
 * @property {import('./services/telemetry.js').TelemetryService} telemetry
 * @property {{render(): void}} live the live view
 * @property {{render(): void}} gate the command gate
 * @property {ChannelLink} link
 */

const NO_WEBRTC =
  "This browser has no WebRTC: through a broker, a telescope is reached over WebRTC only.";

export class BrokerMode {
  /**
   * @param {{api: ApiClient, about: BrokerAbout, video: WebRtcTransport, link: ChannelLink}}
   *   options `video`: the live view's transport (WebRTC alone)
   */
  constructor({ api, about, video, link }) {
    this.api = api;
    this.about = about;
    this.video = video;
    this.link = link;
    this.broker = new BrokerApi(api);
    /** The account, its telescopes; the selection is the telescope connected to. */
    this.account = new BrokerAccount(this.broker);
    this.selection = this.account;
    this.remote = new RemoteLink({ connector: video.connector, link });
    /** The name of the telescope followed, kept after it is gone (to say what ended). */
    this.followedName = "";
    this.hooks = { account: this.account, remote: this.remote };
  }

  /**
   * The role this page has on the telescope shown: the data channel's word (its `welcome`, the
   * role the proxy enforces) over the account's list, which may be older.
   *
   * @returns {TelescopeRole | null}
   */
  role() {
    const id = this.account.selectedId;
    if (!id) return null;
    const listed = this.account.telescope(id)?.role ?? null;
    const welcomed = this.link.open(id)?.role ?? null;
    if (welcomed === "viewer") return "viewer";
    if (welcomed === "operator" && (listed === null || listed === "viewer")) return "operator";
    return listed;
  }

  /** Why this page may not command now (no telescope connected, a viewer), or null. */
  watchOnly() {
    if (!this.account.selectedId) return "Connect to a telescope first.";
    return this.role() === "viewer" ? roleSentence("viewer", this.followedName) : null;
  }

  noTelescopeText() {
    if (!WebRtcTransport.supported) return NO_WEBRTC;
    if (this.remote.state === "refused") {
      return describeRemote(this.remote, this.followedName, null).line;
    }
    if (this.account.state === "signed-out") return "Sign in to reach your telescopes.";
    return "Choose a telescope to connect.";
  }

  /**
   * @param {HTMLElement} page
   * @param {SharedParts} shared
   */
  mount(page, { telemetry, live, gate, link }) {
    const { account, remote, broker, video } = this;
    const panel = byTestId(page, "broker-panel", HTMLElement);
    const members = mountTelescopeMembers(
      {
        dialog: byTestId(page, "members-dialog", HTMLDialogElement),
        confirm: byTestId(page, "revoke-dialog", HTMLDialogElement),
      },
      { broker, account },
    );
    const telescopePanels = /** @type {HTMLElement[]} */ ([
      ...page.querySelectorAll(".panels > .panel"),
    ]).filter((p) => p !== panel);
    const list = mountBrokerTelescopes(
      {
        panel,
        pairDialog: byTestId(page, "pair-dialog", HTMLDialogElement),
        telescopePanels,
      },
      {
        account,
        remote,
        canConnect: WebRtcTransport.supported ? null : NO_WEBRTC,
        role: () => this.role(),
        onManage: (telescope) => members.open(telescope),
      },
    );
    mountBrokerAccount(
      {
        signin: byTestId(page, "signin", HTMLElement),
        header: byTestId(page, "account", HTMLElement),
        signedIn: [byTestId(page, "layout", HTMLElement), panel],
        errorSlot: byTestId(panel, "remote-error", HTMLElement),
      },
      { account, about: this.about },
    );
    mountRemoteStatus(
      {
        line: byTestId(panel, "remote-state", HTMLElement),
        pill: byTestId(page, "connection-pill", HTMLElement),
        banner: byTestId(page, "connection-banner", HTMLElement),
      },
      { remote, account, api: this.api, video, name: () => this.followedName },
    );

    account.addEventListener("select", () => {
      this.followedName = account.selected?.name ?? this.followedName;
      remote.follow(account.selectedId);
    });
    remote.addEventListener("statechange", () => {
      live.render();
      gate.render();
      // Refused for good (access ended, a grant refused, signed out): stop, and say why.
      if (remote.state === "refused") this.#end();
      // Offline: ask the broker often, to connect as soon as its proxy is back.
      if (remote.state === "offline" && remote.telescopeId) account.watch(remote.telescopeId);
    });
    link.addEventListener("statechange", () => {
      gate.render(); // the welcome tells the role
      list.render();
    });
    account.addEventListener("change", () => {
      // The telescope left the account's list (revoked): the access is over.
      if (account.selectedId && account.state === "signed-in" && !account.selected) {
        remote.end("it is no longer among your telescopes");
      }
      // Back online: try now, not at the end of the connector's backoff.
      if (remote.state === "offline" && account.selected?.online) video.connector.retryNow();
    });
    telemetry.addEventListener("statechange", () => {
      if (telemetry.state === "offline") void account.refresh();
    });
    account.addEventListener("statechange", () => live.render());
    live.render();
  }

  start() {
    void this.account.start();
  }

  /** Stop connecting (nothing a retry can mend), drop the picture, learn what changed. */
  #end() {
    this.video.clear();
    this.account.select(null);
    void this.account.refresh();
  }
}
