/**
 * The account signed in to the broker, the telescopes it may use (its role on each and whether
 * each is online: its proxy linked to the broker now), and the telescope this page is connected
 * to. The list is `GET /api/me`, asked again every `refreshMs` while the page is shown, at once
 * when it is shown again or gets the focus, and every `soonMs` while a telescope watched for
 * (`watch`: one just paired, whose proxy links a moment after the code is typed, or one the page
 * found offline) has not come online yet.
 *
 * States (ACCOUNT_TRANSITIONS): `unknown` until the broker has said, then `signed-in` or
 * `signed-out`. A 401 from `/api/me` is `signed-out`; any other failure leaves the state as it
 * was (`error` says why, and the next refresh tries again).
 *
 * Events: `statechange` ({from, to}), `change` (the account or its telescopes), `select` (detail:
 * the id of the telescope chosen, or null).
 */

import { StateMachine } from "../lib/state-machine.js";
import { ApiError } from "./api.js";

/** @typedef {import('./broker-api.js').BrokerApi} BrokerApi */
/** @typedef {import('../types/protocol').BrokerAccountInfo} BrokerAccountInfo */
/** @typedef {import('../types/protocol').Credentials} Credentials */
/** @typedef {import('../types/protocol').Membership} Membership */
/** @typedef {import('../types/protocol').RemoteTelescope} RemoteTelescope */

/** @typedef {"unknown" | "signed-in" | "signed-out"} AccountState */

/** @type {Readonly<Record<AccountState, readonly AccountState[]>>} */
export const ACCOUNT_TRANSITIONS = {
  unknown: ["signed-in", "signed-out"],
  "signed-in": ["signed-out"],
  "signed-out": ["signed-in"],
};

/** A telescope watched for is looked for this long before the normal pace resumes. */
const WATCH_MS = 120_000;

export class BrokerAccount extends EventTarget {
  #machine = new StateMachine(ACCOUNT_TRANSITIONS, /** @type {AccountState} */ ("unknown"));
  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null;
  /** @type {Promise<void> | null} */
  #refreshing = null;
  /** Telescopes watched for and not online yet, with since when. */
  #awaited = /** @type {Map<string, number>} */ (new Map());

  /** Who is signed in, or null. @type {BrokerAccountInfo | null} */
  account = null;
  /** The telescopes the account may use. @type {RemoteTelescope[]} */
  telescopes = [];
  /** The telescope this page is connected to, or null. @type {string | null} */
  selectedId = null;
  /** Why the last refresh failed (other than signed out), or null. @type {Error | null} */
  error = null;

  /**
   * @param {BrokerApi} broker
   * @param {{refreshMs?: number, soonMs?: number}} [options]
   */
  constructor(broker, { refreshMs = 10_000, soonMs = 2_000 } = {}) {
    super();
    this.broker = broker;
    this.refreshMs = refreshMs;
    this.soonMs = soonMs;
  }

  /** @returns {AccountState} */
  get state() {
    return this.#machine.state;
  }

  /** The chosen telescope, if the account may still use it. */
  get selected() {
    return this.telescope(this.selectedId);
  }

  /** @param {string | null} telescopeId */
  telescope(telescopeId) {
    return this.telescopes.find((t) => t.id === telescopeId) ?? null;
  }

  /** Learn who is signed in now; refresh when the page comes back into view. */
  start() {
    const again = () => {
      if (!document.hidden) void this.refresh();
    };
    document.addEventListener("visibilitychange", again);
    window.addEventListener("focus", again);
    return this.refresh();
  }

  /** Ask the broker who we are and which telescopes we may use (one request at a time). */
  refresh() {
    this.#refreshing ??= this.#load().finally(() => {
      this.#refreshing = null;
      this.#schedule();
    });
    return this.#refreshing;
  }

  /** @param {Credentials} credentials */
  async signIn(credentials) {
    await this.broker.signIn(credentials);
    await this.refresh();
  }

  /** @param {Credentials} credentials */
  async signUp(credentials) {
    await this.broker.signUp(credentials);
    await this.refresh();
  }

  async signOut() {
    this.select(null);
    try {
      await this.broker.signOut();
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 401) throw error; // out already
    }
    this.#signedOut();
  }

  /**
   * Pair the proxy that shows `code` as `name`; it is looked for often until it is online.
   *
   * @param {string} code
   * @param {string} name
   * @returns {Promise<Membership>}
   */
  async claim(code, name) {
    const paired = await this.broker.claim({ code, name });
    this.#awaited.set(paired.id, performance.now());
    await this.refresh();
    return paired;
  }

  /**
   * Ask often whether `telescopeId` is online, until it is (or for a couple of minutes).
   *
   * @param {string} telescopeId
   */
  watch(telescopeId) {
    if (this.#awaited.has(telescopeId)) return;
    this.#awaited.set(telescopeId, performance.now());
    if (!this.#refreshing) this.#schedule();
  }

  /**
   * @param {string} code an invitation code
   * @returns {Promise<Membership>}
   */
  async accept(code) {
    const joined = await this.broker.accept(code);
    await this.refresh();
    return joined;
  }

  /** @param {string | null} telescopeId */
  select(telescopeId) {
    if (telescopeId === this.selectedId) return;
    this.selectedId = telescopeId;
    this.dispatchEvent(new CustomEvent("select", { detail: telescopeId }));
  }

  async #load() {
    try {
      const me = await this.broker.me();
      this.account = me.account;
      this.telescopes = me.telescopes;
      this.error = null;
      const now = performance.now();
      for (const [id, since] of this.#awaited) {
        const online = this.telescope(id)?.online ?? false;
        if (online || now - since > WATCH_MS) this.#awaited.delete(id);
      }
      this.#setState("signed-in");
      this.#changed();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        this.#signedOut();
        return;
      }
      this.error = error instanceof Error ? error : new Error(String(error));
      this.#changed();
    }
  }

  #signedOut() {
    this.select(null);
    this.account = null;
    this.telescopes = [];
    this.#awaited.clear();
    this.#setState("signed-out");
    this.#changed();
  }

  #schedule() {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.state === "signed-out" || document.hidden) return;
    const soon = this.state === "unknown" || this.#awaited.size > 0;
    this.#timer = setTimeout(() => void this.refresh(), soon ? this.soonMs : this.refreshMs);
  }

  #changed() {
    this.dispatchEvent(new Event("change"));
  }

  /** @param {AccountState} next */
  #setState(next) {
    const previous = this.#machine.to(next);
    if (previous !== null) {
      this.dispatchEvent(new CustomEvent("statechange", { detail: { from: previous, to: next } }));
    }
  }
}
