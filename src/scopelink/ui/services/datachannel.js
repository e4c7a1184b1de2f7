/**
 * The data-channel protocol's client (docs/protocol.md): commands and status over the peer
 * connection the video uses (or one of data channels only).
 *
 * - `attach(pc)` opens `control` and `telemetry` on a peer connection before its offer; when
 *   `control` opens it says `hello` (with the last telemetry `seq` applied, to resume) and is
 *   `open` at the `welcome`. A client outlives its connections: `attach` again after a reconnect.
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
 * lease message).
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
    this.#closeChannels();
    const control = pc.createDataChannel("control");
    const telemetry = pc.createDataChannel("telemetry", { ordered: false, maxRetransmits: 0 });
    this.#control = control;
    this.#setState("opening");
    control.onopen = () => {
      if (control !== this.#control) return;
      this.#send({
        v: 1,
        type: "hello",
        client_id: this.clientId,
        telemetry_seq: this.seq,
        name: this.name,
      });
    };
    control.onmessage = (event) => {
      if (control === this.#control) this.#receive(event.data);
    };
    control.onclose = () => {
      if (control === this.#control) this.#lost();
    };
    telemetry.onmessage = (event) => {
      if (control === this.#control) this.#receive(event.data);
    };
  }

  /** The connection is gone for good (the page leaves): fail what is pending, stop. */
  close() {
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
      case "error":
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
    const control = this.#control;
    if (!control || control.readyState !== "open") return false;
    control.send(JSON.stringify(message));
    return true;
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
