/**
 * Search-as-you-type over the target catalogue: waits for a pause in typing, cancels the request
 * a newer query makes obsolete, and so only ever shows the answer to what is in the box now.
 *
 * Events: `statechange` (`idle` | `searching` | `done` | `error`), `results`.
 */

import { StateMachine } from "../lib/state-machine.js";

/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {import('./api.js').CatalogueEntry} CatalogueEntry */
/** @typedef {"idle" | "searching" | "done" | "error"} SearchState */

/** @type {Readonly<Record<SearchState, readonly SearchState[]>>} */
export const SEARCH_TRANSITIONS = {
  idle: ["searching"],
  searching: ["done", "error", "idle"],
  done: ["searching", "idle"],
  error: ["searching", "idle"],
};

export class CatalogueSearch extends EventTarget {
  #machine = new StateMachine(SEARCH_TRANSITIONS, /** @type {SearchState} */ ("idle"));
  /** @type {AbortController | null} */
  #abort = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null;
  /** @type {CatalogueEntry[]} */
  results = [];
  query = "";
  /** @type {Error | null} */
  error = null;

  /**
   * @param {ApiClient} api
   * @param {{debounceMs?: number, limit?: number, atSite?: boolean}} [options] `atSite`: ask
   *   for altitudes at the selected telescope's site (a broker's catalogue has none)
   */
  constructor(api, { debounceMs = 150, limit = 8, atSite = true } = {}) {
    super();
    this.api = api;
    this.debounceMs = debounceMs;
    this.limit = limit;
    this.atSite = atSite;
  }

  /** @returns {SearchState} */
  get state() {
    return this.#machine.state;
  }

  /**
   * Search for `query` once typing pauses.
   *
   * @param {string} query
   * @param {string | null} telescopeId gives altitude at that telescope's site
   */
  search(query, telescopeId) {
    this.query = query.trim();
    this.#cancel();
    if (!this.query) {
      this.results = [];
      this.#setState("idle");
      this.dispatchEvent(new Event("results"));
      return;
    }
    this.#setState("searching");
    this.#timer = setTimeout(() => void this.#run(this.query, telescopeId), this.debounceMs);
  }

  /** Forget the query and its results. */
  clear() {
    this.search("", null);
  }

  /**
   * @param {string} query
   * @param {string | null} telescopeId
   */
  async #run(query, telescopeId) {
    const abort = new AbortController();
    this.#abort = abort;
    try {
      const results = await this.api.searchCatalogue(query, {
        limit: this.limit,
        telescopeId: this.atSite ? telescopeId : null,
        signal: abort.signal,
      });
      if (abort.signal.aborted) return;
      this.results = results;
      this.error = null;
      this.#setState("done");
    } catch (error) {
      if (abort.signal.aborted) return; // superseded by a newer query
      this.results = [];
      this.error = error instanceof Error ? error : new Error(String(error));
      this.#setState("error");
    }
    this.dispatchEvent(new Event("results"));
  }

  #cancel() {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#abort?.abort();
    this.#abort = null;
  }

  /** @param {SearchState} next */
  #setState(next) {
    const previous = this.#machine.to(next);
    if (previous !== null) {
      this.dispatchEvent(new CustomEvent("statechange", { detail: { from: previous, to: next } }));
    }
  }
}
