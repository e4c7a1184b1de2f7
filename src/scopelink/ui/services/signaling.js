/**
 * The app's WebRTC signaling channel: one WebSocket per viewer at
 * `/api/telescopes/{id}/signaling` (same origin, `?token=` when the page has one), JSON messages
 * with a `type`. The protocol (docs/ui.md, "WebRTC"):
 *
 * - server → client on open: `hello` (ICE servers, peer limit);
 * - client → server `offer` → `answer`, or `error` (503: peer limit reached); a new offer on the
 *   same socket replaces the session;
 * - client → server `candidate` (trickle; `candidate: ""` ends the candidates);
 * - client → server `restart` → always `error` 422 (the server cannot restart ICE: send a new
 *   offer instead); `bye` ends the session;
 * - client → server `detach` → `detached` (the session lives on without the socket, which the
 *   server then closes; its data channel carries renegotiation), or `error` 409 when the
 *   session's `control` channel is not open;
 * - server → client `session` (peer state changes) and `stats` (every 2 s).
 *
 * States: `idle → connecting → open → closed` (and `connecting → closed`); `closed → connecting`
 * on the next `connect()`. Reconnecting is the caller's job. Events: `statechange` ({from, to}),
 * and one event per server message type (`hello`, `answer`, `error`, `session`, `stats`,
 * `detached`) whose
 * `detail` is the message.
 */

import { StateMachine } from "../lib/state-machine.js";

/** @typedef {import('./api.js').ApiClient} ApiClient */
// The messages, generated from the server's models (scopelink.schema.signaling).
/** @typedef {import('../types/protocol').SignalingHello} HelloMessage */
/** @typedef {import('../types/protocol').SignalingAnswer} AnswerMessage */
/** @typedef {import('../types/protocol').SignalingError} ErrorMessage */
/** @typedef {import('../types/protocol').SignalingSession} SessionMessage */
/** @typedef {import('../types/protocol').SignalingStats} StatsMessage */
/** @typedef {import('../types/protocol').SignalingServerMessage} ServerMessage */
/** @typedef {import('../types/protocol').SignalingClientMessage} ClientMessage */

/** @typedef {"idle" | "connecting" | "open" | "closed"} SignalingState */

/** @type {Readonly<Record<SignalingState, readonly SignalingState[]>>} */
export const SIGNALING_TRANSITIONS = {
  idle: ["connecting", "closed"],
  connecting: ["open", "closed"],
  open: ["closed"],
  closed: ["connecting"],
};

const SERVER_TYPES = new Set(["hello", "answer", "error", "session", "stats", "detached"]);

export class SignalingClient extends EventTarget {
  #machine = new StateMachine(SIGNALING_TRANSITIONS, /** @type {SignalingState} */ ("idle"));
  /** @type {WebSocket | null} */
  #socket = null;
  /** The last `hello`, or null before it arrives. @type {HelloMessage | null} */
  hello = null;
  /** Why the socket closed, for the UI. @type {string | null} */
  closeReason = null;
  /** The close code (a broker's 4503 "telescope offline", 4504 "no answer"…), or null. */
  closeCode = /** @type {number | null} */ (null);

  /** @param {ApiClient} api for the base path and the token */
  constructor(api) {
    super();
    this.api = api;
  }

  /** @returns {SignalingState} */
  get state() {
    return this.#machine.state;
  }

  /**
   * The WebSocket URL of a telescope's channel (same origin; `?token=` when there is one).
   *
   * @param {string} telescopeId
   * @returns {string}
   */
  url(telescopeId) {
    const path = this.api.url(`/api/telescopes/${encodeURIComponent(telescopeId)}/signaling`);
    const url = new URL(path, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    return url.href;
  }

  /**
   * Open the channel (closing any open one first).
   *
   * @param {string} telescopeId
   */
  connect(telescopeId) {
    this.close();
    this.hello = null;
    this.closeReason = null;
    this.closeCode = null;
    this.#setState("connecting");
    const socket = new WebSocket(this.url(telescopeId));
    this.#socket = socket;
    socket.addEventListener("open", () => {
      if (socket === this.#socket) this.#setState("open");
    });
    socket.addEventListener("message", (event) => {
      if (socket === this.#socket) this.#receive(event.data);
    });
    socket.addEventListener("close", (event) => {
      if (socket !== this.#socket) return;
      this.#socket = null;
      this.closeReason = event.reason || `signaling closed (${event.code})`;
      this.closeCode = event.code;
      this.#setState("closed");
    });
  }

  /**
   * Send a message; false when the channel is not open (it is then dropped).
   *
   * @param {ClientMessage} message
   * @returns {boolean}
   */
  send(message) {
    if (this.state !== "open" || !this.#socket) return false;
    this.#socket.send(JSON.stringify(message));
    return true;
  }

  /** Close the channel (sends `bye` first when open). */
  close() {
    const socket = this.#socket;
    if (!socket) return;
    if (this.state === "open") this.send({ type: "bye" });
    this.#socket = null;
    socket.close(1000, "bye");
    this.closeReason = "closed";
    this.closeCode = 1000;
    this.#setState("closed");
  }

  /** @param {unknown} data */
  #receive(data) {
    /** @type {any} */
    let message;
    try {
      message = JSON.parse(String(data));
    } catch {
      return; // not JSON: ignore, the protocol has no such message
    }
    if (!message || typeof message !== "object" || !SERVER_TYPES.has(message.type)) return;
    const typed = /** @type {ServerMessage} */ (message);
    if (typed.type === "hello") this.hello = typed;
    this.dispatchEvent(new CustomEvent(typed.type, { detail: typed }));
  }

  /** @param {SignalingState} next */
  #setState(next) {
    const previous = this.#machine.to(next);
    if (previous !== null) {
      this.dispatchEvent(new CustomEvent("statechange", { detail: { from: previous, to: next } }));
    }
  }
}
