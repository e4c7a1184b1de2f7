/**
 * One telescope's WebRTC peer connection, kept up for whatever rides it: the live video and the
 * data channels (services/webrtc.js), or the data channels alone beside an MJPEG picture
 * (services/channel-link.js). Both use this class: there is one way to negotiate.
 *
 * - A session starts over the signaling socket (services/signaling.js): its `hello` gives the
 *   ICE servers, the offer goes out, our candidates trickle after it, the answer comes back.
 * - Once the connection's `control` data channel is open the socket is let go (`detach`,
 *   docs/webrtc-media.md): the session lives on and the tab holds no socket. While that channel
 *   is open a new session (`renew()`: another tier, a picture that stopped) is offered over it
 *   (docs/protocol.md, "Renegotiation") with every candidate in the offer, and the old
 *   connection is closed once the new one is connected and the channel has moved to it.
 * - Failure (ICE `failed`, or `disconnected` for `disconnectGraceMs`; the channel closed under a
 *   detached session; the server's `session` event `failed`/`closed`; a refused offer, a bad
 *   answer, the socket closed before the channel took over): `retrying`, the connection closed
 *   at once (its place on the server is freed), and after a capped backoff a new session, over
 *   the socket if it is still open, else over a new one.
 * - `yieldChannel` (the channel-only peer): when the telescope's channel moves to another
 *   connection (the live video's), this one closes and stands by until that channel closes.
 *
 * States: CONNECTOR_TRANSITIONS. `connected`: the current connection's ICE is connected.
 * Events: `statechange` ({from, to}); `peer` (detail: the RTCPeerConnection that became the
 * current one; a renewal's only once it is connected); `signaling` (a `SignalingReport`: how
 * the socket's conversation is going, so a page behind a broker can say where it stands: the
 * broker reached, the telescope answering, or the refusal and the close code that ended it).
 */

import { Backoff } from "../lib/backoff.js";
import { StateMachine } from "../lib/state-machine.js";
import { credentialsExpireAt, renewalDelayMs } from "../lib/turn-expiry.js";
import { SignalingClient } from "./signaling.js";

/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {import('./datachannel.js').ChannelClient} ChannelClient */
/** @typedef {import('./datachannel.js').ChannelState} ChannelState */
/** @typedef {import('./signaling.js').AnswerMessage} AnswerMessage */
/** @typedef {import('./signaling.js').ErrorMessage} ErrorMessage */
/** @typedef {import('./signaling.js').SessionMessage} SessionMessage */
/** @typedef {import('../types/protocol').SignalingDetached} DetachedMessage */
/** @typedef {import('../types/protocol').IceServer} IceServer */

/** @typedef {"idle" | "connecting" | "connected" | "retrying" | "standby"} ConnectorState */

/**
 * One step of a session's signaling over the socket: `opening` (a socket is being opened),
 * `open` (it is: the server, or the broker in front of the telescope, answered), `hello` (the
 * telescope's side greeted us), `refused` (an `error` that ends this attempt, with its problem),
 * `closed` (the socket closed before the channel took over, with its code and reason).
 *
 * @typedef {{phase: "opening" | "open" | "hello"}
 *   | {phase: "refused", problem: import('../types/protocol').Problem}
 *   | {phase: "closed", code: number | null, reason: string}} SignalingReport
 */

/** @type {Readonly<Record<ConnectorState, readonly ConnectorState[]>>} */
export const CONNECTOR_TRANSITIONS = {
  idle: ["connecting"],
  connecting: ["connected", "retrying", "standby", "idle"],
  connected: ["retrying", "standby", "idle"],
  retrying: ["connecting", "idle"],
  standby: ["connecting", "idle"],
};

/**
 * What carries signaling for the current session: the socket, its data channel (detached), or
 * neither (the channel moved to another connection).
 *
 * @typedef {"socket" | "channel" | "none"} SignalingVia
 */

/**
 * What opens the data channels on each new connection (services/channel-link.js).
 *
 * @typedef {object} PeerChannels
 * @property {(telescopeId: string, pc: RTCPeerConnection) => ChannelClient | null} attach
 * @property {(telescopeId: string) => ChannelClient | null} open the telescope's channel client
 *   if its channel is open now
 */

/**
 * @typedef {object} ConnectorOptions
 * @property {(pc: RTCPeerConnection) => void} [prepare] adds transceivers and listeners to
 *   each new connection, before its channels and its offer
 * @property {PeerChannels | null} [channels] opens the data channels on each new connection
 * @property {boolean} [yieldChannel] stand by while the channel rides another connection
 * @property {RTCIceTransportPolicy} [iceTransportPolicy]
 * @property {"full" | "reduced"} [tier] the tier to ask for (the server's choice when absent)
 * @property {number} [disconnectGraceMs] ICE `disconnected` this long counts as failed
 * @property {number} [gatherTimeoutMs] how long a renewal's offer waits for its candidates
 * @property {number} [renewTimeoutMs] how long a renewal may take to connect and take over
 */

export class PeerConnector extends EventTarget {
  #machine = new StateMachine(CONNECTOR_TRANSITIONS, /** @type {ConnectorState} */ ("idle"));
  #signaling;
  /** @type {string | null} */
  #telescopeId = null;
  /** The current connection. @type {RTCPeerConnection | null} */
  #pc = null;
  /** A renewal's connection, until it takes over. @type {RTCPeerConnection | null} */
  #next = null;
  /** The connection being made (its channels are being attached). */
  #making = /** @type {RTCPeerConnection | null} */ (null);
  /** The telescope's channel client (one per telescope, the same across its connections). */
  #watched = /** @type {ChannelClient | null} */ (null);
  /** @type {SignalingVia} */
  #via = "socket";
  #detaching = false;
  /** @type {RTCIceServer[]} */
  #iceServers = [];
  #backoff = new Backoff({ initialMs: 500, maximumMs: 10_000 });
  /** @type {ReturnType<typeof setTimeout> | null} */
  #retryTimer = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #graceTimer = null;
  /** The server's session id of the current connection. @type {string | null} */
  sessionId = null;
  /** Why the last attempt failed, for the UI; null while fine. @type {string | null} */
  lastError = null;
  /** The server's last `stats` message (while the socket carries the session). */
  serverStats = /** @type {Record<string, unknown> | null} */ (null);
  /** Sessions made over the data channel (for the UI and tests). */
  renewals = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #credentialsTimer = undefined;

  /**
   * @param {ApiClient} api
   * @param {ConnectorOptions} [options]
   */
  constructor(
    api,
    {
      prepare,
      channels = null,
      yieldChannel = false,
      iceTransportPolicy = "all",
      tier,
      disconnectGraceMs = 2_000,
      gatherTimeoutMs = 3_000,
      renewTimeoutMs = 10_000,
    } = {},
  ) {
    super();
    this.api = api;
    this.prepare = prepare ?? null;
    this.channels = channels;
    this.yieldChannel = yieldChannel;
    this.iceTransportPolicy = iceTransportPolicy;
    this.tier = tier;
    this.disconnectGraceMs = disconnectGraceMs;
    this.gatherTimeoutMs = gatherTimeoutMs;
    this.renewTimeoutMs = renewTimeoutMs;
    const signaling = new SignalingClient(api);
    this.#signaling = signaling;
    signaling.addEventListener("hello", () => {
      this.#iceServers = (signaling.hello?.ice_servers ?? []).map((s) => ({ ...s }));
      this.#report({ phase: "hello" });
      this.#socketSession();
    });
    signaling.addEventListener("answer", (event) => {
      void this.#answer(/** @type {CustomEvent<AnswerMessage>} */ (event).detail);
    });
    signaling.addEventListener("error", (event) => {
      this.#refused(/** @type {CustomEvent<ErrorMessage>} */ (event).detail);
    });
    signaling.addEventListener("detached", (event) => {
      const message = /** @type {CustomEvent<DetachedMessage>} */ (event).detail;
      if (this.#detaching && message.session_id === this.sessionId) this.#via = "channel";
      this.#detaching = false;
    });
    signaling.addEventListener("session", (event) => {
      const message = /** @type {CustomEvent<SessionMessage>} */ (event).detail;
      if (message.session_id !== this.sessionId || this.#via !== "socket") return;
      if (message.state === "failed" || message.state === "closed") {
        this.#fail(`the server ended the session (${message.reason ?? message.state})`);
      }
    });
    signaling.addEventListener("stats", (event) => {
      const detail = /** @type {CustomEvent<{stats: Record<string, unknown>}>} */ (event).detail;
      this.serverStats = detail.stats;
    });
    signaling.addEventListener("statechange", () => {
      if (!this.#telescopeId) return;
      if (signaling.state === "open") this.#report({ phase: "open" });
      if (signaling.state !== "closed") return;
      if (this.#via === "socket" && this.#machine.state !== "standby") {
        const reason = signaling.closeReason ?? "signaling closed";
        this.#report({ phase: "closed", code: signaling.closeCode, reason });
        this.#fail(reason);
      }
    });
  }

  /** @returns {ConnectorState} */
  get state() {
    return this.#machine.state;
  }

  /** The current connection, or null. */
  get pc() {
    return this.#pc;
  }

  /** What carries signaling for the current session now. */
  get via() {
    return this.#via;
  }

  /** The signaling socket's state (closed once the session is detached). */
  get signalingState() {
    return this.#signaling.state;
  }

  /** @param {string} telescopeId */
  start(telescopeId) {
    this.stop();
    this.#telescopeId = telescopeId;
    this.#backoff.reset();
    this.#setState("connecting");
    this.#openSocket();
  }

  stop() {
    this.#telescopeId = null;
    this.#clearTimers();
    this.#signaling.close();
    this.#closePeers();
    this.#setState("idle");
  }

  /**
   * A new session for the same telescope (another tier, a picture that stopped): over the data
   * channel while it is open on a connected connection, else by failing over (`retrying`).
   *
   * @param {string} why
   */
  renew(why) {
    if (!this.#telescopeId || this.state === "retrying" || this.state === "standby") return;
    const client = this.#watched;
    const usable =
      client?.state === "open" &&
      client.carrier === this.#pc &&
      this.#pc?.connectionState === "connected" &&
      this.#next === null;
    if (usable && client) void this.#renewOverChannel(client, why);
    else if (!this.#next) this.#fail(why);
  }

  // -- over the socket --------------------------------------------------------------------------

  #openSocket() {
    if (!this.#telescopeId) return;
    this.#via = "socket";
    this.#report({ phase: "opening" });
    this.#signaling.connect(this.#telescopeId);
  }

  /** A new connection and offer over the open socket (replacing any session on it). */
  #socketSession() {
    if (!this.#telescopeId) return;
    const open = this.yieldChannel ? this.channels?.open(this.#telescopeId) : null;
    if (open) {
      // Another connection carries the channel already: do not take it from it.
      this.#watch(open);
      this.#standBy();
      return;
    }
    this.#closePeers();
    this.#via = "socket";
    const pc = this.#makePeer(this.#iceServers);
    this.#adopt(pc);
    pc.addEventListener("icecandidate", (event) => {
      if (pc !== this.#pc || this.#via !== "socket") return;
      const c = event.candidate;
      this.#signaling.send(
        c && c.candidate
          ? {
              type: "candidate",
              candidate: c.candidate,
              sdpMid: c.sdpMid,
              sdpMLineIndex: c.sdpMLineIndex,
            }
          : { type: "candidate", candidate: "" },
      );
    });
    void (async () => {
      try {
        const offer = await pc.createOffer();
        await pc.setLocalDescription(offer);
        if (pc !== this.#pc) return;
        const sdp = pc.localDescription?.sdp ?? offer.sdp ?? "";
        this.#signaling.send(
          this.tier ? { type: "offer", sdp, tier: this.tier } : { type: "offer", sdp },
        );
      } catch (error) {
        if (pc === this.#pc) this.#fail(`offer failed: ${message(error)}`);
      }
    })();
  }

  /** @param {AnswerMessage} answer */
  async #answer(answer) {
    const pc = this.#pc;
    if (!pc || pc.signalingState !== "have-local-offer") return;
    this.sessionId = answer.session_id;
    try {
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    } catch (error) {
      if (pc === this.#pc) this.#fail(`bad answer: ${message(error)}`);
    }
  }

  /** @param {ErrorMessage} error */
  #refused({ problem }) {
    if (!this.#telescopeId) return;
    if (this.#detaching && problem.status === 409) {
      this.#detaching = false; // not detachable now: the socket stays
      return;
    }
    this.#report({ phase: "refused", problem });
    // A 503 is the server's peer limit, unless a broker says the telescope is offline.
    const full = problem.status === 503 && !(problem.type ?? "").endsWith("/offline");
    const why = full ? "the server has no room for another viewer" : problem.title;
    this.#fail(`${why}${problem.detail ? `: ${problem.detail}` : ""}`);
  }

  // -- over the data channel --------------------------------------------------------------------

  /**
   * @param {ChannelClient} client
   * @param {string} why
   */
  async #renewOverChannel(client, why) {
    const previous = this.#pc;
    let servers = this.#iceServers;
    try {
      // Fresh TURN credentials: the hello's may be older than their lifetime.
      const fresh = /** @type {{iceServers: IceServer[]}} */ (
        await this.api.get("/api/webrtc/ice-servers")
      );
      servers = fresh.iceServers.map((s) => ({ ...s }));
      this.#iceServers = servers;
    } catch {
      // the last ones known
    }
    if (this.#pc !== previous || !this.#telescopeId) return;
    console.info(`webrtc: a new session over the data channel (${why})`);
    const pc = this.#makePeer(servers);
    this.#next = pc;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, this.gatherTimeoutMs);
      if (pc !== this.#next) return;
      const sdp = pc.localDescription?.sdp ?? "";
      const answer = await client.offer(sdp, { tier: this.tier });
      if (pc !== this.#next) return;
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
      await takenOver(pc, client, this.renewTimeoutMs);
      if (pc !== this.#next) return;
      this.#next = null;
      this.renewals += 1;
      this.#watchCredentials(this.state); // the new connection's credentials
      this.sessionId = answer.session_id;
      this.#via = "channel";
      this.#adopt(pc);
      previous?.close();
      if (this.#pc?.connectionState === "connected") this.#setState("connected");
    } catch (error) {
      if (pc !== this.#next) return;
      this.#next = null;
      pc.close();
      this.#fail(`a new session over the data channel failed: ${message(error)}`);
    }
  }

  // -- connections ------------------------------------------------------------------------------

  /** @param {RTCIceServer[]} iceServers */
  #makePeer(iceServers) {
    const pc = new RTCPeerConnection({
      iceServers,
      iceTransportPolicy: this.iceTransportPolicy,
      bundlePolicy: "max-bundle",
    });
    this.prepare?.(pc);
    const telescopeId = /** @type {string} */ (this.#telescopeId);
    this.#making = pc;
    const client = this.channels?.attach(telescopeId, pc);
    this.#making = null;
    if (client) this.#watch(client);
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc === this.#pc) this.#iceChanged(pc.iceConnectionState);
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.#pc || pc.connectionState !== "connected") return;
      this.#backoff.reset();
      this.lastError = null;
      if (this.state === "connecting") this.#setState("connected");
    });
    return pc;
  }

  /** @param {RTCPeerConnection} pc */
  #adopt(pc) {
    this.#pc = pc;
    this.serverStats = null;
    this.dispatchEvent(new CustomEvent("peer", { detail: pc }));
  }

  /** @param {ChannelClient} client */
  #watch(client) {
    if (this.#watched === client) return;
    this.#watched = client;
    client.addEventListener("statechange", () => {
      if (this.#watched === client) this.#channelChanged(client);
    });
    client.addEventListener("carrier", () => {
      if (this.#watched === client) this.#carrierChanged(client);
    });
  }

  /** @param {ChannelClient} client */
  #channelChanged(client) {
    if (!this.#telescopeId) return;
    if (client.state === "open") {
      this.#maybeDetach(client);
    } else if (client.state === "closed") {
      if (this.state === "standby") {
        this.#setState("connecting"); // the connection that took the channel is gone
        this.#openSocket();
      } else if (client.carrier === this.#pc && this.#via === "channel") {
        this.#fail("the connection was closed");
      }
    }
  }

  /**
   * The channel is open on the current connection: let the socket go.
   *
   * @param {ChannelClient} client
   */
  #maybeDetach(client) {
    const ready = client.state === "open" && client.carrier === this.#pc && this.#pc !== null;
    if (ready && this.#via === "socket" && !this.#detaching && this.sessionId !== null) {
      this.#detaching = this.#signaling.send({ type: "detach" });
    }
  }

  /** @param {ChannelClient} client */
  #carrierChanged(client) {
    const carrier = client.carrier;
    if (carrier === this.#pc) this.#maybeDetach(client); // ours took the channel over
    const ours = carrier === this.#pc || carrier === this.#next || carrier === this.#making;
    if (ours || !this.#telescopeId) return;
    // The channel moved to a connection that is not ours.
    if (this.yieldChannel && this.state !== "retrying" && this.state !== "standby") {
      this.#standBy();
    } else if (this.#via === "channel") {
      this.#via = "none"; // a renewal goes over a new socket now
    }
  }

  /** Let the channel ride another connection: no socket, no connection, until it closes. */
  #standBy() {
    this.#clearTimers();
    this.#via = "none"; // the socket closed below is no failure
    this.#signaling.close();
    this.#closePeers();
    this.#setState("standby");
  }

  /** @param {RTCIceConnectionState} state */
  #iceChanged(state) {
    if (this.#graceTimer) clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
    if (state === "disconnected") {
      this.#graceTimer = setTimeout(() => {
        this.#graceTimer = null;
        this.#fail("the connection was interrupted");
      }, this.disconnectGraceMs);
    } else if (state === "failed") {
      this.#fail("the connection failed");
    }
  }

  /**
   * Something broke: close the connection now, wait (backoff), then a new session over the
   * socket if it is open, else over a new socket.
   *
   * @param {string} why
   */
  #fail(why) {
    const state = this.state;
    if (!this.#telescopeId || state === "retrying" || state === "idle" || state === "standby") {
      return;
    }
    this.lastError = why;
    this.#clearTimers();
    this.#closePeers();
    this.#setState("retrying");
    this.#retryTimer = setTimeout(() => this.#retry(), this.#backoff.next());
  }

  /**
   * While retrying, try again now rather than at the end of the backoff: the page learnt that
   * what failed is back (the broker lists the telescope online again).
   */
  retryNow() {
    if (this.state !== "retrying" || !this.#retryTimer) return;
    clearTimeout(this.#retryTimer);
    this.#retry();
  }

  #retry() {
    this.#retryTimer = null;
    if (!this.#telescopeId) return;
    this.#setState("connecting");
    if (this.#signaling.state === "open" && this.#signaling.hello) this.#socketSession();
    else this.#openSocket();
  }

  #closePeers() {
    const pcs = [this.#pc, this.#next];
    this.#pc = this.#next = null;
    this.sessionId = null;
    this.#detaching = false;
    for (const pc of pcs) pc?.close();
  }

  #clearTimers() {
    for (const timer of [this.#retryTimer, this.#graceTimer]) {
      if (timer) clearTimeout(timer);
    }
    this.#retryTimer = this.#graceTimer = null;
  }

  /** @param {SignalingReport} report */
  #report(report) {
    this.dispatchEvent(new CustomEvent("signaling", { detail: report }));
  }

  /** @param {ConnectorState} next */
  #setState(next) {
    const previous = this.#machine.to(next);
    if (previous !== null) {
      this.#watchCredentials(next);
      this.dispatchEvent(new CustomEvent("statechange", { detail: { from: previous, to: next } }));
    }
  }

  /**
   * While connected, renew the connection (over its data channel, with fresh ICE servers) a
   * margin before its TURN credentials expire: a relayed connection would lose its relay.
   *
   * @param {ConnectorState} state
   */
  #watchCredentials(state) {
    clearTimeout(this.#credentialsTimer);
    this.#credentialsTimer = undefined;
    if (state !== "connected") return;
    const delay = renewalDelayMs(credentialsExpireAt(this.#iceServers), Date.now());
    if (delay === null) return;
    this.#credentialsTimer = setTimeout(() => this.renew("TURN credentials expire"), delay);
  }
}

/**
 * Wait until the connection has gathered its candidates (or `timeoutMs`: what it has by then).
 *
 * @param {RTCPeerConnection} pc
 * @param {number} timeoutMs
 * @returns {Promise<void>}
 */
function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * Wait until the connection is connected and the channel has moved to it.
 *
 * @param {RTCPeerConnection} pc
 * @param {ChannelClient} client
 * @param {number} timeoutMs
 * @returns {Promise<void>}
 */
function takenOver(pc, client, timeoutMs) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") {
        finish(new Error(`the new connection ${pc.connectionState}`));
      } else if (pc.connectionState === "connected" && client.carrier === pc) {
        finish(null);
      }
    };
    /** @param {Error | null} error */
    const finish = (error) => {
      clearTimeout(timer);
      pc.removeEventListener("connectionstatechange", check);
      client.removeEventListener("carrier", check);
      if (error) reject(error);
      else resolve();
    };
    const timer = setTimeout(() => finish(new Error("not connected in time")), timeoutMs);
    pc.addEventListener("connectionstatechange", check);
    client.addEventListener("carrier", check);
    check();
  });
}

/** @param {unknown} error */
function message(error) {
  return error instanceof Error ? error.message : String(error);
}
