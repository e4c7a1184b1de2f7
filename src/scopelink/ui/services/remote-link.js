/**
 * The page's path to one telescope through a broker, as far as the page can tell: the broker
 * reached (the signaling socket opened), the telescope's proxy answering (its `hello`), the
 * session negotiated, the data channel open; or why not: the telescope offline (the broker has
 * no link from its proxy: 4503), its proxy not answering (4504), the connection interrupted (the
 * connector retries), or refused for good (a grant the proxy refused, no role on the telescope
 * any more, signed out), which no retry can mend.
 *
 * It follows the live view's connector (`signaling` reports and its state) and the telescope's
 * data channel (services/channel-link.js). While the connector retries after a refusal the state
 * stays what the refusal said (no flicker through "reaching" every few seconds); the next step
 * that is news (the telescope answering, the channel opening, another refusal) moves it on.
 *
 * States: REMOTE_TRANSITIONS. Events: `statechange` ({from, to}).
 */

import { classifyRefusal } from "../lib/signaling-refusal.js";
import { StateMachine } from "../lib/state-machine.js";

/** @typedef {import('./peer-connector.js').PeerConnector} PeerConnector */
/** @typedef {import('./peer-connector.js').SignalingReport} SignalingReport */
/** @typedef {import('./channel-link.js').ChannelLink} ChannelLink */
/** @typedef {import('../lib/signaling-refusal.js').Refusal} Refusal */

/**
 * @typedef {"idle" | "reaching" | "waiting" | "negotiating" | "connected" | "offline"
 *   | "no-answer" | "interrupted" | "refused"} RemoteState
 */

/** @type {Readonly<Record<RemoteState, readonly RemoteState[]>>} */
export const REMOTE_TRANSITIONS = {
  idle: ["reaching"],
  reaching: [
    "waiting",
    "negotiating",
    "connected",
    "offline",
    "no-answer",
    "interrupted",
    "refused",
    "idle",
  ],
  waiting: ["negotiating", "connected", "offline", "no-answer", "interrupted", "refused", "idle"],
  negotiating: ["connected", "offline", "no-answer", "interrupted", "refused", "idle"],
  connected: ["interrupted", "offline", "no-answer", "refused", "idle"],
  offline: ["negotiating", "connected", "no-answer", "interrupted", "refused", "idle"],
  "no-answer": ["negotiating", "connected", "offline", "interrupted", "refused", "idle"],
  interrupted: [
    "waiting",
    "negotiating",
    "connected",
    "offline",
    "no-answer",
    "refused",
    "idle",
  ],
  refused: ["reaching", "idle"],
};

/** States in which the connector is trying again by itself. */
const RETRYING = new Set(["offline", "no-answer", "interrupted"]);

export class RemoteLink extends EventTarget {
  #machine = new StateMachine(REMOTE_TRANSITIONS, /** @type {RemoteState} */ ("idle"));
  /** @type {string | null} */
  #telescopeId = null;
  /** This attempt was refused already: its socket's close says nothing new. */
  #refusedThisAttempt = false;
  /** Whether the channel was open since `follow`: an ended access, not one never given. */
  wasConnected = false;
  /** Why it is not connected (the server's words, or the connector's), or null. */
  reason = /** @type {string | null} */ (null);
  /** What the last refusal was, or null. */
  refusal = /** @type {Refusal | null} */ (null);

  /**
   * @param {{connector: PeerConnector, link: ChannelLink}} sources the live view's connector
   *   (`WebRtcTransport.connector`) and the data channels
   */
  constructor({ connector, link }) {
    super();
    connector.addEventListener("signaling", (event) => {
      this.#signaled(/** @type {CustomEvent<SignalingReport>} */ (event).detail);
    });
    connector.addEventListener("statechange", () => {
      const busy = this.state === "idle" || this.state === "refused" || RETRYING.has(this.state);
      if (connector.state === "retrying" && !busy) {
        this.reason = connector.lastError;
        this.#to("interrupted");
      }
    });
    link.addEventListener("statechange", (event) => {
      const { telescopeId, to } = /** @type {CustomEvent<{telescopeId: string, to: string}>} */ (
        event
      ).detail;
      if (telescopeId !== this.#telescopeId) return;
      if (to === "open" && this.state !== "idle" && this.state !== "refused") {
        this.wasConnected = true;
        this.reason = null;
        this.refusal = null;
        this.#to("connected");
      } else if (to === "closed" && this.state === "connected") {
        this.reason = "the data channel closed";
        this.#to("interrupted");
      }
    });
  }

  /** @returns {RemoteState} */
  get state() {
    return this.#machine.state;
  }

  /** The telescope followed, or null. */
  get telescopeId() {
    return this.#telescopeId;
  }

  /**
   * Follow the connection to `telescopeId` (the live view starts it), or none. Stopping keeps a
   * refusal on show: it says why the page stopped.
   *
   * @param {string | null} telescopeId
   */
  follow(telescopeId) {
    if (telescopeId === this.#telescopeId) return;
    this.#telescopeId = telescopeId;
    this.#refusedThisAttempt = false;
    if (telescopeId === null) {
      if (this.state !== "refused") this.#to("idle");
      return;
    }
    this.wasConnected = false;
    this.reason = null;
    this.refusal = null;
    if (this.state !== "idle" && this.state !== "refused") this.#to("idle");
    this.#to("reaching");
  }

  /**
   * The page learnt by other means that this access is over (the telescope left the account's
   * list): refused, with `why`.
   *
   * @param {string} why
   */
  end(why) {
    if (this.state === "idle" || this.state === "refused") return;
    this.reason = why;
    this.refusal = { kind: "no-access", final: true, detail: why };
    this.#to("refused");
  }

  /** @param {SignalingReport} report */
  #signaled(report) {
    if (!this.#telescopeId || this.state === "idle" || this.state === "refused") return;
    switch (report.phase) {
      case "opening":
        this.#refusedThisAttempt = false;
        break;
      case "open":
        if (this.state === "reaching" || this.state === "interrupted") this.#to("waiting");
        break;
      case "hello":
        if (this.state !== "connected") this.#to("negotiating");
        break;
      case "refused":
        this.#refusedThisAttempt = true;
        this.#refused(classifyRefusal(report.problem));
        break;
      case "closed":
        if (this.#refusedThisAttempt) break; // the refusal said it all
        if (report.code !== null && report.code >= 4000) {
          this.#refused(classifyRefusal({ code: report.code, reason: report.reason }));
        }
        // a plain close before the channel took over: the connector retries (`interrupted`)
        break;
    }
  }

  /** @param {Refusal} refusal */
  #refused(refusal) {
    this.refusal = refusal;
    this.reason = refusal.detail;
    if (refusal.final) this.#to("refused");
    else if (refusal.kind === "offline") this.#to("offline");
    else if (refusal.kind === "no-answer") this.#to("no-answer");
    else this.#to("interrupted");
  }

  /** @param {RemoteState} next */
  #to(next) {
    const previous = this.#machine.to(next);
    if (previous !== null) {
      this.dispatchEvent(new CustomEvent("statechange", { detail: { from: previous, to: next } }));
    }
  }
}
