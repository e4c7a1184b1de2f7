/**
 * The telescopes the backend knows, and which one this page shows. The choice is remembered in
 * the browser, so a reload comes back to the same telescope.
 *
 * Events: `statechange` (`loading` | `ready` | `error`), `change` (the list), `select` (the id).
 */

import { StateMachine } from "../lib/state-machine.js";

/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {import('./api.js').TelescopeSummary} TelescopeSummary */
/** @typedef {import('./api.js').NewTelescope} NewTelescope */
/** @typedef {"loading" | "ready" | "error"} TelescopeListState */

/** @type {Readonly<Record<TelescopeListState, readonly TelescopeListState[]>>} */
export const TELESCOPE_LIST_TRANSITIONS = {
  loading: ["ready", "error"],
  ready: ["loading"],
  error: ["loading"],
};

const STORAGE_KEY = "scopelink.telescope";

export class TelescopeList extends EventTarget {
  #machine = new StateMachine(
    TELESCOPE_LIST_TRANSITIONS,
    /** @type {TelescopeListState} */ ("loading"),
  );
  /** @type {TelescopeSummary[]} */
  telescopes = [];
  /** @type {string | null} */
  selectedId = null;
  /** Why the last load failed, when it did. @type {Error | null} */
  error = null;

  /**
   * @param {ApiClient} api
   * @param {{storage?: Pick<Storage, "getItem" | "setItem"> | null}} [options]
   */
  constructor(api, { storage = globalThis.localStorage ?? null } = {}) {
    super();
    this.api = api;
    this.storage = storage;
  }

  /** @returns {TelescopeListState} */
  get state() {
    return this.#machine.state;
  }

  /** The selected telescope's summary, if it is in the list. */
  get selected() {
    return this.telescopes.find((t) => t.id === this.selectedId) ?? null;
  }

  /** Load the list; keep the selection if it still exists, else pick the remembered or first. */
  async refresh() {
    this.#setState("loading");
    try {
      this.telescopes = await this.api.telescopes();
      this.error = null;
      this.#setState("ready");
    } catch (error) {
      this.error = error instanceof Error ? error : new Error(String(error));
      this.#setState("error");
      throw error;
    } finally {
      this.dispatchEvent(new Event("change"));
    }
    const ids = this.telescopes.map((t) => t.id);
    const wanted = [this.selectedId, this.storage?.getItem(STORAGE_KEY), ids[0]];
    this.select(wanted.find((id) => id != null && ids.includes(id)) ?? null);
  }

  /** @param {string | null} telescopeId */
  select(telescopeId) {
    if (telescopeId === this.selectedId) return;
    this.selectedId = telescopeId;
    if (telescopeId) this.storage?.setItem(STORAGE_KEY, telescopeId);
    this.dispatchEvent(new CustomEvent("select", { detail: telescopeId }));
  }

  /**
   * Connect another telescope and show it.
   *
   * @param {NewTelescope} telescope
   * @returns {Promise<TelescopeSummary>}
   */
  async add(telescope) {
    const added = await this.api.addTelescope(telescope);
    this.selectedId = null; // make refresh() pick the new one below
    this.storage?.setItem(STORAGE_KEY, added.id);
    await this.refresh();
    return added;
  }

  /** @param {string} telescopeId */
  async remove(telescopeId) {
    await this.api.removeTelescope(telescopeId);
    if (this.selectedId === telescopeId) this.selectedId = null;
    await this.refresh();
  }

  /** @param {TelescopeListState} next */
  #setState(next) {
    const previous = this.#machine.to(next);
    if (previous !== null) {
      this.dispatchEvent(new CustomEvent("statechange", { detail: { from: previous, to: next } }));
    }
  }
}
