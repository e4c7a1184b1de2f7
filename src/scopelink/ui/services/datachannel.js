/**
 * The data-channel protocol's client (docs/protocol.md): commands and status over the peer
 * connection the video uses (or one of data channels only).
 *
 * - `attach(pc)` opens `control` and `telemetry` on a peer connection before its offer; when
 *   `control` opens it says `hello` (with the last telemetry `seq` applied, to resume) and is
 *   `open` at the `welcome`. A client outlives its connections: `attach` again after a reconnect.
 *   Attached to a second connection while the first is open, the client stays on the first until
 *   the second's `welcome`, then moves over (no `statechange`) and lets the first's channels go:
 *   renegotiation over the channel (`offer`) changes connection without a gap.
 * - `offer(sdp)` sends a new peer connection's offer over the open channel (docs/protocol.md,
 *   "Renegotiation") and settles on the server's `answer`.
 * - `command(name, params)` returns a promise that settles on the command's `result` (resolved
 *   with the `CommandAck`, rejected with an `ApiError` carrying the server's problem). A command
 *   whose `ack` does not come within `ackTimeoutMs` is sent again with the same id, and every
 *   command without a result is sent again after a reconnect: the server runs an id once and
 *   answers a repeat with the first result.
 * - Telemetry: a snapshot replaces the state; a delta applies only when its `prev` is the last
 *   `seq` applied, else the client asks for a snapshot (`resync`) and waits for it.
 * - A `ping` every `keepalive_ms` keeps a held control lease (and a running move's deadman)
 *   alive and measures the round trip.
 *
 * States: `idle → opening → open → closed → opening …`. Events: `statechange`, `snapshot`
 * (detail: the state), `delta` (detail: the delta), `operation`, `event`, `lease` (detail: the
 * lease message), `carrier` (detail: the peer connection the channel moved to, by a takeover or
 * by an `attach` that replaced a connection whose channel was not open).
 */

import { StateMachine } from "../lib/state-machine.js";
import { ApiError } from "./api.js";
import { QUEUE_DEADLINE_MS, offlineRule } from "./commands.js";

/** A move sent over the channel must start within this long, or not at all. */
export const MOVE_DEADLINE_MS = 1_500;

/** @typedef {import('../types/protocol').CommandAck} CommandAck */
/** @typedef {import('../types/protocol').Lease} LeaseMessage */
/** @typedef {import('../types/protocol').ChannelServerMessage} ServerMessage */
/** @typedef {import('../types/protocol').ChannelClientMessage} ClientMessage */
/** @typedef {import('../types/protocol').Problem} Problem */
/** @typedef {import('../types/protocol').RenegotiateAnswer} AnswerMessage */
/** @typedef {"idle" | "opening" | "open" | "closed"} ChannelState */
/** @typedef {import('./commands.js').CommandTransport} CommandTransport */

/** @type {Readonly<Record<ChannelState, readonly ChannelState[]>>} */
export const CHANNEL_TRANSITIONS = {
  idle: ["opening"],
  opening: ["open", "closed"],
  open: ["closed"],
  closed: ["opening"],
};

/**
 * The two channels a client needs from a peer connection (an `RTCPeerConnection`, or anything
 * that makes channels the same way).
 *
 * @typedef {{createDataChannel(label: string, options?: RTCDataChannelInit): RTCDataChannel}}
 *   ChannelMaker
 */

/**
 * @typedef {object} PendingCommand
 * @property {string} id
 * @property {string} name
 * @property {Record<string, unknown>} params
 * @property {number | null} deadlineMs
 * @property {(ack: CommandAck) => void} resolve
 * @property {(error: ApiError) => void} reject
 * @property {boolean} acked
 * @property {number} sends
 * @property {ReturnType<typeof setTimeout> | null} timer
 */

/**
 * @typedef {object} ChannelOptions
 * @property {string} [clientId] this client's id (kept for the life of the tab)
 * @property {string | null} [name] shown to others while this client holds control
 * @property {number} [ackTimeoutMs] a command without an ack this long is sent again
 * @property {number} [maxSends] how often one command is sent before it fails as unknown
 */

/** An id the protocol takes: 8–64 of A-Za-z0-9_- (a UUID without its dashes would do too). */
function newClientId() {
  return crypto.randomUUID();
}

export class ChannelClient extends EventTarget {
  #machine = new StateMachine(CHANNEL_TRANSITIONS, /** @type {ChannelState} */ ("idle"));
  /** @type {RTCDataChannel | null} */
  #control = null;
  /** @type {Map<string, PendingCommand>} */
  #pending = new Map();
  /** @type {ReturnType<typeof setInterval> | null} */
  #keepalive = null;
  #resyncAsked = false;
  /** A second connection's `control`, until its welcome moves the client over. */
  #next = /** @type {RTCDataChannel | null} */ (null);
  /** The connections whose channels are `#control` and `#next`. */
  #carrier = /** @type {ChannelMaker | null} */ (null);
  #nextCarrier = /** @type {ChannelMaker | null} */ (null);
  /** The offer sent over the channel and not yet answered. */
  #offer =
    /** @type {{resolve: (a: AnswerMessage) => void, reject: (e: Error) => void, timer: ReturnType<typeof setTimeout>} | null} */ (
      null
    );

  /** The telescope's state from the last snapshot and the deltas since, or null. */
  telescope = /** @type {Record<string, any> | null} */ (null);
  /** The `seq` of the last telemetry message applied, or null. */
  seq = /** @type {number | null} */ (null);
  /** The control lease as the server last said, or null before the welcome. */
  lease = /** @type {LeaseMessage | null} */ (null);
  /** The last round trip of a ping (ms), or null. */
  rttMs = /** @type {number | null} */ (null);
  /** From the welcome: the server's role for us, its keepalive interval. */
  role = /** @type {string | null} */ (null);
  keepaliveMs = 500;
  /** The server's clock less ours (ms), from the welcome: deadlines are in the server's time. */
  clockOffsetMs = 0;

  /** @param {ChannelOptions} [options] */
  constructor({ clientId, name = null, ackTimeoutMs = 2_000, maxSends = 5 } = {}) {
    super();
    this.clientId = clientId ?? newClientId();
    this.name = name;
    this.ackTimeoutMs = ackTimeoutMs;
    this.maxSends = maxSends;
  }

  /** @returns {ChannelState} */
  get state() {
    return this.#machine.state;
  }

  /** The peer connection the channel rides now (the last attached until a takeover). */
  get carrier() {
    return this.#carrier;
  }

  /** Commands sent and not yet answered with a result. */
  get pending() {
    return this.#pending.size;
  }

  /** The server's clock now (epoch ms), as far as the welcome told. */
  serverNow() {
    return Date.now() + this.clockOffsetMs;
  }

  /**
   * Open the protocol's channels on a peer connection that has not made its offer yet.
   *
   * @param {ChannelMaker} pc
   */
  attach(pc) {
    const control = pc.createDataChannel("control");
    const telemetry = pc.createDataChannel("telemetry", { ordered: false, maxRetransmits: 0 });
    this.#dropNext(); // a connection that never took over: forgotten
    if (this.state === "open" && this.#control?.readyState === "open") {
      this.#next = control; // the open one serves until this one's welcome
      this.#nextCarrier = pc;
    } else {
      this.#closeChannels();
      const moved = this.#carrier !== null && this.#carrier !== pc;
      this.#control = control;
      this.#carrier = pc;
      this.#setState("opening");
      if (moved) this.#emit("carrier", pc);
    }
    control.onopen = () => {
      if (control !== this.#control && control !== this.#next) return;
      this.#sendOn(control, {
        v: 1,
        type: "hello",
        client_id: this.clientId,
        telemetry_seq: this.seq,
        name: this.name,
      });
    };
    control.onmessage = (event) => {
      if (control === this.#control) this.#receive(event.data);
      else if (control === this.#next) this.#receiveNext(control, event.data);
    };
    control.onclose = () => {
      if (control === this.#control) this.#lost();
      else if (control === this.#next) this.#next = this.#nextCarrier = null;
    };
    telemetry.onmessage = (event) => {
      if (control === this.#control) this.#receive(event.data);
    };
  }

  /**
   * Send a new peer connection's offer over the open channel: the server answers with a new
   * session (docs/protocol.md, "Renegotiation"). Rejects when the server refuses it, when no
   * answer comes within `timeoutMs`, or when the channel is not open.
   *
   * @param {string} sdp the new connection's offer, with its candidates (no trickle here)
   * @param {{tier?: "full" | "reduced", timeoutMs?: number}} [options]
   * @returns {Promise<AnswerMessage>}
   */
  offer(sdp, { tier, timeoutMs = 10_000 } = {}) {
    this.#settleOffer(new Error("another offer replaced it"));
    return new Promise((resolve, reject) => {
      /** @type {ClientMessage} */
      const message = tier ? { v: 1, type: "offer", sdp, tier } : { v: 1, type: "offer", sdp };
      if (this.state !== "open" || !this.#send(message)) {
        reject(new Error("the data channel is not open"));
        return;
      }
      const timer = setTimeout(() => this.#settleOffer(new Error("no answer in time")), timeoutMs);
      this.#offer = { resolve, reject, timer };
    });
  }

  /** @param {Error | AnswerMessage} outcome */
  #settleOffer(outcome) {
    const pending = this.#offer;
    if (!pending) return;
    this.#offer = null;
    clearTimeout(pending.timer);
    if (outcome instanceof Error) pending.reject(outcome);
    else pending.resolve(outcome);
  }

  /** The connection is gone for good (the page leaves): fail what is pending, stop. */
  close() {
    this.#dropNext();
    this.#closeChannels();
    for (const command of this.#pending.values()) {
      if (command.timer) clearTimeout(command.timer);
      command.reject(unknownOutcome(command, "the connection was closed"));
    }
    this.#pending.clear();
  }

  // -- commands ---------------------------------------------------------------------------------

  /**
   * Run a command; settles on its result.
   *
   * @param {string} name the command's REST `type`
   * @param {Record<string, unknown>} [params]
   * @param {{id?: string, deadlineMs?: number | null}} [options]
   * @returns {Promise<CommandAck>}
   */
  command(name, params = {}, { id = crypto.randomUUID(), deadlineMs = null } = {}) {
    return new Promise((resolve, reject) => {
      /** @type {PendingCommand} */
      const command = {
        id,
        name,
        params,
        deadlineMs,
        resolve,
        reject,
        acked: false,
        sends: 0,
        timer: null,
      };
      this.#pending.set(id, command);
      if (this.state === "open") this.#sendCommand(command);
    });
  }

  /** @param {PendingCommand} command */
  #sendCommand(command) {
    if (command.sends >= this.maxSends) {
      this.#settle(command.id);
      command.reject(unknownOutcome(command, `no answer after ${command.sends} tries`));
      return;
    }
    command.sends += 1;
    /** @type {ClientMessage} */
    const message = { v: 1, type: "command", id: command.id, name: command.name };
    message.params = command.params;
    if (command.deadlineMs != null) message.deadline_ms = command.deadlineMs;
    this.#send(message);
    if (command.timer) clearTimeout(command.timer);
    command.timer = setTimeout(() => {
      command.timer = null;
      if (!command.acked && this.state === "open" && this.#pending.has(command.id)) {
        this.#sendCommand(command); // the same id: the server runs it once
      }
    }, this.ackTimeoutMs);
  }

  /** @param {string} id */
  #settle(id) {
    const command = this.#pending.get(id);
    if (command?.timer) clearTimeout(command.timer);
    this.#pending.delete(id);
    return command;
  }

  // -- the lease --------------------------------------------------------------------------------

  /** @param {"take" | "request" | "release" | "grant" | "deny"} action */
  leaseAction(action) {
    this.#send({ v: 1, type: "lease", action });
  }

  // -- receiving --------------------------------------------------------------------------------

  /**
   * A message on a second connection's `control` before it takes over: its welcome moves the
   * client there (the same welcome work: lease, keepalive, unanswered commands sent again).
   *
   * @param {RTCDataChannel} control
   * @param {unknown} data
   */
  #receiveNext(control, data) {
    let type = null;
    try {
      type = JSON.parse(String(data))?.type;
    } catch {
      return;
    }
    if (type !== "welcome") return;
    const previous = this.#control;
    this.#control = control;
    this.#carrier = this.#nextCarrier;
    this.#next = this.#nextCarrier = null;
    if (previous) {
      previous.onopen = previous.onmessage = previous.onclose = null;
      if (previous.readyState === "open") previous.close();
    }
    if (this.state === "closed") this.#setState("opening"); // the old one closed first
    for (const command of this.#pending.values()) command.acked = false;
    this.#receive(data);
    this.#emit("carrier", this.#carrier);
  }

  /** @param {unknown} data */
  #receive(data) {
    /** @type {ServerMessage} */
    let message;
    try {
      message = JSON.parse(String(data));
    } catch {
      console.warn("datachannel: unreadable message");
      return;
    }
    switch (message.type) {
      case "welcome":
        this.clockOffsetMs = message.server_time_ms - Date.now();
        this.role = message.role;
        this.keepaliveMs = message.keepalive_ms;
        this.#applyLease(message.lease);
        this.#setState("open");
        this.#startKeepalive();
        for (const command of this.#pending.values()) {
          command.sends = 0;
          this.#sendCommand(command); // after a reconnect: the same ids, answered once
        }
        break;
      case "ack": {
        const command = this.#pending.get(message.id);
        if (!command) break;
        if (message.accepted) {
          command.acked = true;
        } else {
          this.#settle(message.id);
          command.reject(new ApiError(/** @type {Problem} */ (message.problem)));
        }
        break;
      }
      case "result": {
        const command = this.#settle(message.id);
        if (!command) break;
        if (message.ok && message.ack) command.resolve(message.ack);
        else command.reject(new ApiError(/** @type {Problem} */ (message.problem)));
        break;
      }
      case "telemetry":
        this.#telemetry(message);
        break;
      case "progress":
        this.#emit("operation", message.operation);
        break;
      case "event":
        this.#emit("event", message.event);
        break;
      case "lease":
        this.#applyLease(message);
        break;
      case "pong":
        this.rttMs = performance.now() - message.t;
        break;
      case "answer":
        this.#settleOffer(message);
        break;
      case "error":
        if (message.ref === "offer") {
          this.#settleOffer(new ApiError(/** @type {Problem} */ (message.problem)));
          break;
        }
        console.warn("datachannel: the server refused a message", message.problem, message.ref);
        break;
    }
  }

  /** @param {import('../types/protocol').Telemetry} message */
  #telemetry(message) {
    if (message.kind === "snapshot") {
      if (this.seq !== null && message.seq < this.seq && this.telescope) return; // stale
      this.telescope = message.data;
      this.seq = message.seq;
      this.#resyncAsked = false;
      this.#emit("snapshot", message.data);
      return;
    }
    if (this.telescope === null || message.prev !== this.seq) {
      // A delta was lost or came out of order: wait for a snapshot, asking for one once.
      if (!this.#resyncAsked && this.state === "open") {
        this.#resyncAsked = true;
        this.#send({ v: 1, type: "resync" });
      }
      return;
    }
    const state = this.telescope;
    for (const [section, fields] of Object.entries(message.data)) {
      const current = state[section];
      state[section] =
        current && typeof current === "object" && !Array.isArray(current)
          ? { ...current, .../** @type {object} */ (fields) }
          : fields;
    }
    this.seq = message.seq;
    this.#emit("delta", message.data);
  }

  /** @param {LeaseMessage | import('../types/protocol').ControlState} lease */
  #applyLease(lease) {
    this.lease = { v: 1, type: "lease", ...lease };
    this.#emit("lease", this.lease);
  }

  // -- plumbing ---------------------------------------------------------------------------------

  /** @param {ClientMessage} message */
  #send(message) {
    return this.#sendOn(this.#control, message);
  }

  /**
   * @param {RTCDataChannel | null} control
   * @param {ClientMessage} message
   */
  #sendOn(control, message) {
    if (!control || control.readyState !== "open") return false;
    control.send(JSON.stringify(message));
    return true;
  }

  #dropNext() {
    const next = this.#next;
    this.#next = this.#nextCarrier = null;
    if (next) {
      next.onopen = next.onmessage = next.onclose = null;
      if (next.readyState === "open" || next.readyState === "connecting") next.close();
    }
  }

  #startKeepalive() {
    if (this.#keepalive) clearInterval(this.#keepalive);
    this.#keepalive = setInterval(() => {
      this.#send({ v: 1, type: "ping", t: performance.now() });
    }, this.keepaliveMs);
  }

  #lost() {
    if (this.#keepalive) clearInterval(this.#keepalive);
    this.#keepalive = null;
    for (const command of this.#pending.values()) {
      if (command.timer) clearTimeout(command.timer);
      command.timer = null;
      command.acked = false; // its ack may never come now: ask again on the next connection
    }
    this.#settleOffer(new Error("the data channel closed"));
    if (this.state === "opening" || this.state === "open") this.#setState("closed");
  }

  #closeChannels() {
    const control = this.#control;
    this.#control = null;
    if (control) {
      control.onopen = control.onmessage = control.onclose = null;
      if (control.readyState === "open" || control.readyState === "connecting") control.close();
    }
    this.#lost();
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** @param {ChannelState} next */
  #setState(next) {
    const previous = this.#machine.to(next);
    if (previous !== null) {
      this.dispatchEvent(new CustomEvent("statechange", { detail: { from: previous, to: next } }));
    }
  }
}

/**
 * @param {PendingCommand} command
 * @param {string} why
 */
function unknownOutcome(command, why) {
  return new ApiError({
    type: "https://scopelink.invalid/problems/connection-lost",
    title: "No answer",
    status: 0,
    detail: `${command.name}: ${why}; it may or may not have run`,
    outcome: "unknown",
  });
}

/**
 * Commands over a channel client (a `CommandTransport` for services/commands.js).
 *
 * @implements {CommandTransport}
 */
export class ChannelCommands {
  /** @param {ChannelClient} client */
  constructor(client) {
    this.client = client;
  }

  /**
   * @param {string} _telescopeId the client's connection is to one telescope already
   * @param {import('../types/protocol').Command} command
   * @param {string} id
   * @returns {Promise<CommandAck>}
   */
  send(_telescopeId, command, id) {
    const { type, ...params } = command;
    // A command kept for a reconnect follows the offline rules too: the server refuses it
    // (`expired`) once its deadline has passed, so a move is never made late.
    const rule = offlineRule(command);
    const within =
      rule === "never" ? MOVE_DEADLINE_MS : rule === "deadline" ? QUEUE_DEADLINE_MS : null;
    const deadlineMs = within === null ? null : Math.round(this.client.serverNow() + within);
    return this.client.command(type, params, { id, deadlineMs });
  }
}
