/**
 * The control lease as this page sees it (docs/protocol.md, "Control lease"), as an explicit
 * state machine: the server decides, and each `lease` message moves the page's machine to the
 * state it describes. A move says what happened, in words, when the page did not cause it:
 * "Control was handed to you", "… kept control", "Your control lapsed".
 *
 * States:
 * - `unknown`: no open data channel, so the page cannot tell;
 * - `free`: nobody controls the telescope;
 * - `yours`: this page controls it;
 * - `asked`: this page controls it and someone asks for it (hand over or keep);
 * - `asking`: someone else controls it and this page asked for it;
 * - `other`: someone else controls it; this page watches.
 *
 * Events: `statechange` ({from, to, note}): `note` is what happened, or null.
 */

import { StateMachine } from "../lib/state-machine.js";

/** @typedef {import('../types/protocol').Lease} Lease */
/** @typedef {import('../types/protocol').Holder} Holder */
/** @typedef {"unknown" | "free" | "yours" | "asked" | "asking" | "other"} LeaseState */

/**
 * Every move the server can make; anything else (a message lost between two others) goes by
 * `unknown`, which can reach every state.
 *
 * @type {Readonly<Record<LeaseState, readonly LeaseState[]>>}
 */
export const LEASE_TRANSITIONS = {
  unknown: ["free", "yours", "asked", "asking", "other"],
  free: ["unknown", "yours", "other"],
  yours: ["unknown", "free", "asked", "other"],
  asked: ["unknown", "yours", "free", "other"],
  asking: ["unknown", "yours", "free", "other"],
  other: ["unknown", "free", "yours", "asking"],
};

/**
 * The state a lease message describes (null: no open channel).
 *
 * @param {Lease | null} lease
 * @returns {LeaseState}
 */
export function leaseState(lease) {
  if (!lease) return "unknown";
  if (lease.yours) return lease.requested_by ? "asked" : "yours";
  if (!lease.holder) return "free";
  return lease.requested_by_you ? "asking" : "other";
}

/** @param {Holder | null | undefined} who */
export function describeHolder(who) {
  if (!who) return "nobody";
  return who.name || (who.transport === "rest" ? "a script or page over REST" : "another page");
}

/**
 * What a move means to the person at this page, when they did not make it themselves
 * (`acted`: the page's own last action).
 *
 * @param {LeaseState} from
 * @param {LeaseState} to
 * @param {Lease | null} lease the lease now
 * @param {string | null} acted
 * @returns {string | null}
 */
export function leaseNote(from, to, lease, acted) {
  const holder = describeHolder(lease?.holder);
  if (from === "asking" && to === "yours") return "Control was handed to you.";
  if (from === "asking" && to === "other") return `${holder} kept control.`;
  if (from === "asked" && to === "other") return `You handed control to ${holder}.`;
  if ((from === "yours" || from === "asked") && to === "free" && acted !== "release") {
    return "Your control lapsed: this page was silent too long.";
  }
  if ((from === "yours" || from === "asked") && to === "other" && acted !== "grant") {
    return `Your control lapsed; ${holder} took it.`;
  }
  return null;
}

export class LeaseTracker extends EventTarget {
  #machine = new StateMachine(LEASE_TRANSITIONS, /** @type {LeaseState} */ ("unknown"));
  /** The lease as last told, or null without an open channel. */
  lease = /** @type {Lease | null} */ (null);
  /** What happened at the last move that the page did not make itself, or null. */
  note = /** @type {string | null} */ (null);
  /** The page's own last action ("take", "request", "release", "grant", "deny"), or null. */
  #acted = /** @type {string | null} */ (null);

  /** @returns {LeaseState} */
  get state() {
    return this.#machine.state;
  }

  /** @param {string} action what this page asked the server to do */
  acted(action) {
    this.#acted = action;
  }

  /**
   * A lease message (or null: the channel closed).
   *
   * @param {Lease | null} lease
   */
  update(lease) {
    this.lease = lease;
    const from = this.#machine.state;
    const to = leaseState(lease);
    if (from === to) return;
    if (!this.#machine.can(to)) this.#machine.to("unknown"); // a message between was missed
    this.#machine.to(to);
    const note = to === "unknown" ? null : leaseNote(from, to, lease, this.#acted);
    if (note !== null || to !== "unknown") this.note = note;
    this.#acted = null;
    this.dispatchEvent(new CustomEvent("statechange", { detail: { from, to, note } }));
  }
}
