/**
 * The REST API client: JSON in and out, `application/problem+json` turned into a typed
 * `ApiError`. It also reports whether the backend answers at all (`reachable` /
 * `unreachable`), which the connection banner shows. Commands go through
 * `services/commands.js`.
 */

import { StateMachine } from "../lib/state-machine.js";

/** @typedef {import('../types/protocol').CommandAck} CommandAck */
/** @typedef {import('../types/protocol').Problem} Problem */
/** @typedef {import('../types/protocol').TelescopeState} TelescopeState */
/** @typedef {import('../types/protocol').Operation} Operation */
/** @typedef {import('../types/protocol').Role} Role */
/** @typedef {import('../types/protocol').Device["cameras"][number]} CameraName */

/** @typedef {import('../types/protocol').TelescopeSummary} TelescopeSummary */
/** @typedef {import('../types/protocol').NewTelescope} NewTelescope */
/** @typedef {import('../types/protocol').CatalogueEntry} CatalogueEntry */
/** @typedef {import('../types/protocol').AccessInfo} AccessInfo */

/** An API failure: the problem the server described, or a network failure (`status` 0). */
export class ApiError extends Error {
  /**
   * @param {Problem} problem
   */
  constructor(problem) {
    super(problem.detail || problem.title);
    this.name = "ApiError";
    this.problem = problem;
    this.status = problem.status;
    this.title = problem.title;
    /** @type {string | null} */
    this.detail = problem.detail ?? null;
    /**
     * Which input was wrong and why, for validation errors.
     * @type {{field: string, msg: string}[]}
     */
    this.fields = (problem.errors ?? []).map((e) => ({
      field: String(e.field ?? (Array.isArray(e.loc) ? e.loc.join(".") : "")),
      msg: String(e.msg ?? ""),
    }));
    this.telescopeCode = problem.telescope_code ?? null;
    /** "not_run" (nothing happened) or "unknown" (it may have run), for commands. */
    this.outcome = problem.outcome ?? null;
  }

  /** The request never got an answer: the backend is down or the network is. */
  get unreachable() {
    return this.status === 0;
  }
}

/** The problem type of a request that got no answer within its `timeoutMs`. */
export const NO_ANSWER = "https://scopelink.invalid/problems/no-answer";

/** @typedef {"unknown" | "reachable" | "unreachable"} Reachability */

/** @type {Readonly<Record<Reachability, readonly Reachability[]>>} */
export const REACHABILITY_TRANSITIONS = {
  unknown: ["reachable", "unreachable"],
  reachable: ["unreachable"],
  unreachable: ["reachable"],
};

export class ApiClient extends EventTarget {
  #reachability = new StateMachine(
    REACHABILITY_TRANSITIONS,
    /** @type {Reachability} */ ("unknown"),
  );

  /**
   * @param {{base?: string, token?: string | null, fetch?: typeof fetch}} [options]
   *   `token`: an access token, when the server needs one (sent as a Bearer header, and as
   *   `?token=` on URLs the browser fetches by itself: EventSource, images)
   */
  constructor({ base = "", token = null, fetch: fetchImpl } = {}) {
    super();
    this.base = base;
    this.token = token;
    this.fetchImpl = fetchImpl ?? globalThis.fetch.bind(globalThis);
  }

  /** Whether the backend answered the last request: `unknown`, `reachable` or `unreachable`. */
  get reachability() {
    return this.#reachability.state;
  }

  /**
   * A URL for the browser to load by itself (EventSource, `<img>`), with the token if any.
   *
   * @param {string} path
   * @param {Record<string, string | number | null | undefined>} [params]
   * @returns {string}
   */
  url(path, params = {}) {
    const url = new URL(this.base + path, location.href);
    for (const [key, value] of Object.entries(params)) {
      if (value != null) url.searchParams.set(key, String(value));
    }
    if (this.token) url.searchParams.set("token", this.token);
    return url.pathname + url.search;
  }

  /**
   * @template T
   * @param {string} method
   * @param {string} path
   * @param {{body?: unknown, headers?: Record<string, string>, signal?: AbortSignal,
   *          timeoutMs?: number}} [options] `timeoutMs`: no answer this long counts as no
   *   answer at all (a dead link can hold a request for many minutes)
   * @returns {Promise<T>}
   * @throws {ApiError}
   */
  async request(method, path, { body, headers = {}, signal, timeoutMs } = {}) {
    /** @type {Record<string, string>} */
    const sent = { Accept: "application/json, application/problem+json", ...headers };
    if (body !== undefined) sent["Content-Type"] = "application/json";
    if (this.token) sent.Authorization = `Bearer ${this.token}`;
    // The caller's signal, and our timeout, end the request.
    const ending = timeoutMs ? new AbortController() : null;
    const onAbort = () => ending?.abort(signal?.reason);
    signal?.addEventListener("abort", onAbort);
    let timedOut = false;
    const timer = ending
      ? setTimeout(() => {
          timedOut = true;
          ending.abort(new Error("timed out"));
        }, timeoutMs)
      : null;
    let response;
    try {
      response = await this.fetchImpl(this.base + path, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: ending?.signal ?? signal,
        cache: "no-store",
      });
    } catch (error) {
      if (signal?.aborted) throw error; // the caller gave up: not the backend's fault
      this.#setReachability("unreachable");
      const why = timedOut
        ? `no answer within ${Math.round((timeoutMs ?? 0) / 1000)} s`
        : error instanceof Error
          ? error.message
          : String(error);
      throw new ApiError({
        type: timedOut ? NO_ANSWER : "about:blank",
        title: "Backend unreachable",
        status: 0,
        detail: `scopelink did not answer (${why})`,
      });
    } finally {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
    // Any HTTP answer, even an error, means the backend is up.
    this.#setReachability(response.status >= 502 && response.status <= 504 && !isProblem(response)
      ? "unreachable" // a proxy in front of a dead backend answers 502-504 without a problem body
      : "reachable");
    if (response.status === 204) return /** @type {T} */ (undefined);
    const text = await response.text();
    /** @type {any} */
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!response.ok) {
      if (data && typeof data === "object" && typeof data.title === "string") {
        throw new ApiError({ status: response.status, ...data });
      }
      throw new ApiError({
        type: "about:blank",
        title: response.statusText || "Error",
        status: response.status,
        detail: text.slice(0, 200) || `HTTP ${response.status}`,
      });
    }
    return /** @type {T} */ (data);
  }

  /**
   * @template T
   * @param {string} path
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<T>}
   */
  get(path, options) {
    return this.request("GET", path, options);
  }

  // -- typed shorthands ---------------------------------------------------------------------

  /** @returns {Promise<AccessInfo>} */
  session() {
    return this.get("/api/session");
  }

  /** @returns {Promise<TelescopeSummary[]>} */
  telescopes() {
    return this.get("/api/telescopes");
  }

  /**
   * @param {NewTelescope} telescope
   * @returns {Promise<TelescopeSummary>}
   */
  addTelescope(telescope) {
    return this.request("POST", "/api/telescopes", { body: telescope });
  }

  /**
   * @param {string} telescopeId
   * @returns {Promise<void>}
   */
  removeTelescope(telescopeId) {
    return this.request("DELETE", `/api/telescopes/${encodeURIComponent(telescopeId)}`);
  }

  /**
   * @param {string} query
   * @param {{limit?: number, telescopeId?: string | null, signal?: AbortSignal}} [options]
   * @returns {Promise<CatalogueEntry[]>}
   */
  searchCatalogue(query, { limit = 8, telescopeId = null, signal } = {}) {
    const params = new URLSearchParams({ q: query, limit: String(limit) });
    if (telescopeId) params.set("telescope_id", telescopeId);
    return this.get(`/api/catalog?${params}`, { signal });
  }

  /** Another channel (the telemetry stream) just heard from the backend: it is reachable. */
  confirmReachable() {
    this.#setReachability("reachable");
  }

  /** @param {Reachability} next */
  #setReachability(next) {
    if (this.#reachability.to(next) !== null) {
      this.dispatchEvent(new CustomEvent("reachability", { detail: next }));
    }
  }
}

/**
 * @param {Response} response
 * @returns {boolean}
 */
function isProblem(response) {
  return (response.headers.get("content-type") ?? "").includes("problem+json");
}
