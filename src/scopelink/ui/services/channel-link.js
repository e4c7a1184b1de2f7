/**
 * The page's data channel (docs/protocol.md): one `ChannelClient` per telescope, riding the
 * peer connection of the WebRTC live view (`WebRtcTransport`'s `channels`), or, while the live
 * view is MJPEG, a connection of data channels only (`standalone()`). While a telescope's
 * channel is open, commands (`PreferredCommands`) and status (`PreferredStatus`) go through it;
 * otherwise through REST and server-sent events, which stay as the fallback. Behind a broker
 * there is no such fallback (`NoCommandRoute`, `NoStatusRoute`): commands wait for the channel
 * in the command port's queue, by its rules, and status waits for it.
 *
 * The page has one client id for its life (kept in `sessionStorage`, so a reload is the same
 * client): the data channel's `hello` and REST's `Scopelink-Client` header both carry it, so
 * the tab is one controller for the control lease whichever way a command goes.
 *
 * Events: `statechange` (detail: `{telescopeId, to}`: a telescope's channel opened or closed).
 */

import { ApiError } from "./api.js";
import { ChannelClient, ChannelCommands } from "./datachannel.js";
import { PeerConnector } from "./peer-connector.js";

/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {import('./commands.js').CommandTransport} CommandTransport */
/** @typedef {import('./telemetry.js').StatusTransport} StatusTransport */
/** @typedef {import('./telemetry.js').StatusSink} StatusSink */
/** @typedef {import('./telemetry.js').MessageKind} MessageKind */
/** @typedef {import('./datachannel.js').ChannelState} ChannelState */

const CLIENT_ID_KEY = "scopelink.client-id";

/** This tab's client id: made once, kept for the tab's life. */
export function tabClientId() {
  try {
    const known = sessionStorage.getItem(CLIENT_ID_KEY);
    if (known) return known;
    const made = crypto.randomUUID();
    sessionStorage.setItem(CLIENT_ID_KEY, made);
    return made;
  } catch {
    return crypto.randomUUID(); // storage disabled: an id for this page
  }
}

export class ChannelLink extends EventTarget {
  /** @type {Map<string, ChannelClient>} */
  #clients = new Map();

  /** The connection of data channels only, while the live view carries none. */
  #own = /** @type {PeerConnector | null} */ (null);
  #ownFor = /** @type {string | null} */ (null);
  /** The telescope the data-channel-only connection is to, while it runs. */
  #ownTelescope = /** @type {string | null} */ (null);

  /**
   * @param {{clientId: string, name?: string | null, api?: ApiClient | null,
   *          enabled?: boolean}} options `enabled: false` (`?datachannel=off`): no channel is
   *   ever opened, so commands and status always go over REST and server-sent events
   */
  constructor({ clientId, name = null, api = null, enabled = true }) {
    super();
    this.clientId = clientId;
    this.name = name;
    this.api = api;
    this.enabled = enabled;
  }

  /**
   * Keep a connection of data channels only (no video) to `telescopeId`, or none (null): for
   * while the live view carries no channel (MJPEG, or a hidden page), so commands and status
   * still go over one. When the live view's WebRTC connection opens the channel it takes it
   * over, and this one stands by until that connection ends (`PeerConnector`'s `yieldChannel`);
   * asked to stop while it carries the channel, it goes on until it has handed the channel over.
   *
   * @param {string | null} telescopeId
   */
  standalone(telescopeId) {
    this.#ownFor = telescopeId;
    const own = this.#own;
    const running = own !== null && own.state !== "idle" ? this.#ownTelescope : null;
    if (running !== null && running === telescopeId) return; // on it already (or standing by)
    if (own && running !== null && telescopeId === null && this.open(running)?.carrier === own.pc) {
      return; // it carries the channel: stopped once it has handed it over
    }
    own?.stop();
    this.#ownTelescope = null;
    if (!telescopeId || !this.api || !this.enabled) return;
    if (typeof globalThis.RTCPeerConnection !== "function") return;
    let made = this.#own;
    if (!made) {
      made = new PeerConnector(this.api, { channels: this, yieldChannel: true });
      const connector = made;
      connector.addEventListener("statechange", () => {
        if (connector.state === "standby" && this.#ownFor === null) {
          connector.stop();
          this.#ownTelescope = null;
        }
      });
      this.#own = made;
    }
    this.#ownTelescope = telescopeId;
    made.start(telescopeId);
  }

  /** The data-channel-only connection's state ("idle" without one), for the UI and tests. */
  get standaloneState() {
    return this.#own?.state ?? "idle";
  }

  /**
   * Open a telescope's channels on a new peer connection, before its offer; its client.
   *
   * @param {string} telescopeId
   * @param {RTCPeerConnection} pc
   */
  attach(telescopeId, pc) {
    if (!this.enabled) return null;
    const client = this.client(telescopeId);
    client.attach(pc);
    return client;
  }

  /**
   * The telescope's channel client (made on first use).
   *
   * @param {string} telescopeId
   */
  client(telescopeId) {
    let client = this.#clients.get(telescopeId);
    if (!client) {
      client = new ChannelClient({ clientId: this.clientId, name: this.name });
      const made = client;
      made.addEventListener("statechange", (event) => {
        const { to } = /** @type {CustomEvent<{to: ChannelState}>} */ (event).detail;
        this.dispatchEvent(new CustomEvent("statechange", { detail: { telescopeId, to } }));
      });
      this.#clients.set(telescopeId, client);
    }
    return client;
  }

  /**
   * The telescope's channel client if its channel is open now, else null.
   *
   * @param {string} telescopeId
   */
  open(telescopeId) {
    const client = this.#clients.get(telescopeId);
    return client?.state === "open" ? client : null;
  }
}

/**
 * Commands over the telescope's data channel when it is open, over REST when it is not.
 *
 * @implements {CommandTransport}
 */
export class PreferredCommands {
  /**
   * @param {ChannelLink} link
   * @param {CommandTransport} rest
   */
  constructor(link, rest) {
    this.link = link;
    this.rest = rest;
  }

  /**
   * @param {string} telescopeId
   * @param {import('../types/protocol').Command} command
   * @param {string} id
   */
  send(telescopeId, command, id) {
    const client = this.link.open(telescopeId);
    return client
      ? new ChannelCommands(client).send(telescopeId, command, id)
      : this.rest.send(telescopeId, command, id);
  }
}

/**
 * Status from the telescope's data channel while it is open; from the fallback transport
 * (server-sent events) before it opens and after it closes.
 *
 * @implements {StatusTransport}
 */
export class PreferredStatus {
  /** @type {string | null} */
  #telescopeId = null;
  /** @type {StatusSink | null} */
  #sink = null;
  /** @type {"fallback" | "channel"} */
  #via = "fallback";
  /** @type {(() => void)[]} */
  #unsubscribe = [];

  /**
   * @param {ChannelLink} link
   * @param {StatusTransport} fallback
   */
  constructor(link, fallback) {
    this.link = link;
    this.fallback = fallback;
  }

  /** Which transport carries status now. */
  get via() {
    return this.#via;
  }

  /**
   * @param {string} telescopeId
   * @param {StatusSink} sink
   */
  open(telescopeId, sink) {
    this.close();
    this.#telescopeId = telescopeId;
    this.#sink = sink;
    const client = this.link.client(telescopeId);
    /** @type {[string, MessageKind][]} */
    const forwarded = [
      ["snapshot", "snapshot"],
      ["delta", "delta"],
      ["operation", "operation"],
      ["event", "event"],
    ];
    for (const [event, kind] of forwarded) {
      /** @param {Event} e */
      const listener = (e) => {
        if (this.#via === "channel") sink.message(kind, /** @type {CustomEvent} */ (e).detail);
      };
      client.addEventListener(event, listener);
      this.#unsubscribe.push(() => client.removeEventListener(event, listener));
    }
    const onState = () => this.#follow(client);
    client.addEventListener("statechange", onState);
    this.#unsubscribe.push(() => client.removeEventListener("statechange", onState));
    this.#via = "fallback";
    this.#follow(client);
    if (this.#via === "fallback") this.fallback.open(telescopeId, sink);
  }

  reopen() {
    if (this.#via === "fallback") this.fallback.reopen();
  }

  close() {
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    this.fallback.close();
    this.#telescopeId = null;
    this.#sink = null;
    this.#via = "fallback";
  }

  /** @param {ChannelClient} client */
  #follow(client) {
    const sink = this.#sink;
    const telescopeId = this.#telescopeId;
    if (!sink || !telescopeId) return;
    if (client.state === "open" && this.#via === "fallback") {
      this.#via = "channel";
      this.fallback.close();
      sink.opened();
      if (client.telescope) sink.message("snapshot", client.telescope);
    } else if (client.state !== "open" && this.#via === "channel") {
      this.#via = "fallback";
      sink.lost(); // live again when the fallback opens (or the channel comes back)
      this.fallback.open(telescopeId, sink); // a fresh snapshot over SSE
    }
  }
}

/** The problem type of a command that found no open data channel and no other route. */
export const NO_CHANNEL = "https://scopelink.invalid/problems/no-channel";

/**
 * The command route behind the data channel where there is none (a broker: no REST). A command
 * sent while the channel is not open is refused as unreachable, so the command port keeps it
 * in its queue by its rule (services/commands.js `offlineRule`) and sends it once the channel
 * opens; a move is refused at once, with that reason.
 *
 * @implements {CommandTransport}
 */
export class NoCommandRoute {
  /** @param {string} why what the user is told, e.g. "no data channel to the telescope yet" */
  constructor(why) {
    this.why = why;
  }

  /**
   * @param {string} _telescopeId
   * @param {import('../types/protocol').Command} _command
   * @param {string} _id
   * @returns {Promise<import('../types/protocol').CommandAck>}
   */
  send(_telescopeId, _command, _id) {
    const problem = { type: NO_CHANNEL, title: "Not connected", status: 0, detail: this.why };
    return Promise.reject(new ApiError(problem));
  }
}

/**
 * The status route behind the data channel where there is none (a broker: no server-sent
 * events): nothing opens, so status is live only while the channel is open.
 *
 * @implements {StatusTransport}
 */
export class NoStatusRoute {
  /**
   * @param {string} _telescopeId
   * @param {StatusSink} _sink
   */
  open(_telescopeId, _sink) {}
  reopen() {}
  close() {}
}
