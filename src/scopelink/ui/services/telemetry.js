/**
 * Telemetry over server-sent events: keeps one telescope's `TelescopeState` from the stream's
 * `snapshot` and `delta` messages and re-emits what happens.
 *
 * Events: `statechange` (the connection state below), `telescope` (detail: the state and the
 * sections that changed), `operation` (an Operation), `event` (a raw firmware event, for the log).
 *
 * Connection states, and why each exists:
 * - `idle`: not following any telescope.
 * - `connecting`: the first connection for this telescope; nothing to show yet.
 * - `live`: the stream is open; the state shown is current.
 * - `reconnecting`: the stream broke; the browser (or we) retry, resuming from the last event
 *   id, so nothing is missed. What is shown is the last known state.
 * - `offline`: still broken after `offlineAfterMs`: the backend or the network is down. Retries
 *   go on with backoff (and at once when the browser says it is back online); the UI says so.
 */

import { Backoff } from "../lib/backoff.js";
import { StateMachine } from "../lib/state-machine.js";

/** @typedef {import('../types/protocol').TelescopeState} TelescopeState */
/** @typedef {import('../types/protocol').Operation} Operation */
/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {"idle" | "connecting" | "live" | "reconnecting" | "offline"} TelemetryState */
/** @typedef {keyof TelescopeState} Section */
/** @typedef {{telescope: TelescopeState, changed: Set<Section>}} TelescopeDetail */
/** A firmware event as the telescope sent it, e.g. `{Event: "ScopeGoto", state: "working"}`. */
/** @typedef {{Event?: string, state?: string, [key: string]: unknown}} FirmwareEvent */

/** @type {Readonly<Record<TelemetryState, readonly TelemetryState[]>>} */
export const TELEMETRY_TRANSITIONS = {
  idle: ["connecting"],
  connecting: ["live", "reconnecting", "idle"],
  live: ["reconnecting", "idle"],
  reconnecting: ["live", "offline", "idle"],
  offline: ["live", "idle"],
};

/**
 * @typedef {object} TelemetryOptions
 * @property {number} [offlineAfterMs] broken this long: `offline` instead of `reconnecting`
 * @property {number} [silenceLimitMs] no message this long: assume a dead connection that the
 *   browser has not noticed (a silently dropped Wi-Fi) and reopen it, resuming
 * @property {(url: string) => EventSource} [eventSource] for tests
 */

export class TelemetryService extends EventTarget {
  #machine = new StateMachine(TELEMETRY_TRANSITIONS, /** @type {TelemetryState} */ ("idle"));
  /** @type {EventSource | null} */
  #source = null;
  /** @type {string | null} */
  #telescopeId = null;
  /** @type {string | null} */
  #lastEventId = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #retryTimer = null;
  /** @type {ReturnType<typeof setInterval> | null} */
  #watchdog = null;
  /** When the stream broke (ms, `performance.now()`), or null while it is fine. */
  #lostAt = /** @type {number | null} */ (null);
  #backoff = new Backoff({ initialMs: 1_000, maximumMs: 15_000 });

  /** The telescope's state as last received, or null before the first snapshot. */
  telescope = /** @type {TelescopeState | null} */ (null);
  /** When the last message arrived (ms, `performance.now()`), or null. */
  lastMessageAt = /** @type {number | null} */ (null);

  /**
   * @param {ApiClient} api
   * @param {TelemetryOptions} [options]
   */
  constructor(api, { offlineAfterMs = 6_000, silenceLimitMs = 40_000, eventSource } = {}) {
    super();
    this.api = api;
    this.offlineAfterMs = offlineAfterMs;
    this.silenceLimitMs = silenceLimitMs;
    this.createEventSource = eventSource ?? ((url) => new EventSource(url));
    this.onOnline = () => this.#reopenNow();
  }

  /** @returns {TelemetryState} */
  get state() {
    return this.#machine.state;
  }

  /** The telescope being followed, or null. */
  get telescopeId() {
    return this.#telescopeId;
  }

  /**
   * How long since the last message, in ms (0 before any).
   *
   * @param {number} [now]
   */
  silenceMs(now = performance.now()) {
    return this.lastMessageAt == null ? 0 : now - this.lastMessageAt;
  }

  /**
   * Follow a telescope (stops following the previous one).
   *
   * @param {string} telescopeId
   */
  start(telescopeId) {
    this.stop();
    this.#telescopeId = telescopeId;
    this.#lastEventId = null;
    this.telescope = null;
    this.#backoff.reset();
    this.#setState("connecting");
    this.#open();
    this.#watchdog = setInterval(() => this.#check(), 1_000);
    globalThis.addEventListener?.("online", this.onOnline);
  }

  /** Stop following; the service can be started again. */
  stop() {
    this.#close();
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#watchdog = null;
    globalThis.removeEventListener?.("online", this.onOnline);
    this.#telescopeId = null;
    this.#lostAt = null;
    this.#setState("idle");
  }

  #open() {
    if (!this.#telescopeId) return;
    const path = `/api/telescopes/${encodeURIComponent(this.#telescopeId)}/events`;
    // Our own reopen resumes with `since`; the browser's own retries send Last-Event-ID.
    const source = this.createEventSource(this.api.url(path, { since: this.#lastEventId }));
    this.#source = source;
    source.onopen = () => {
      if (source !== this.#source) return;
      this.lastMessageAt = performance.now();
      this.#backoff.reset();
      this.#lostAt = null;
      this.#setState("live");
    };
    source.onerror = () => {
      if (source !== this.#source) return;
      this.#lost();
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error such as a restarting proxy's 502): retry ourselves.
        this.#scheduleReopen(this.#backoff.next());
      }
    };
    for (const kind of ["snapshot", "delta", "operation", "event"]) {
      source.addEventListener(kind, (message) => {
        if (source === this.#source) this.#receive(kind, /** @type {MessageEvent} */ (message));
      });
    }
  }

  #close() {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#source?.close();
    this.#source = null;
  }

  /** @param {number} delayMs */
  #scheduleReopen(delayMs) {
    this.#close();
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#open();
    }, delayMs);
  }

  #reopenNow() {
    if (this.state === "idle") return;
    this.#backoff.reset();
    this.#scheduleReopen(0);
  }

  #lost() {
    const now = performance.now();
    this.#lostAt ??= now;
    if (this.state === "live" || this.state === "connecting") this.#setState("reconnecting");
    this.#check(now);
  }

  /** Once a second: give up on a silent stream, and say `offline` when it has been long. */
  #check(now = performance.now()) {
    if (this.state === "idle") return;
    // Not navigator.onLine: a backend on this machine stays reachable with the network down.
    if (this.#lostAt != null && now - this.#lostAt >= this.offlineAfterMs) {
      this.#setState("offline");
    }
    if (this.state === "live" && this.silenceMs(now) > this.silenceLimitMs) {
      // Reopen quietly: the state only changes if the new connection fails too.
      this.lastMessageAt = now;
      this.#scheduleReopen(0);
    }
  }

  /**
   * @param {string} kind
   * @param {MessageEvent} message
   */
  #receive(kind, message) {
    this.lastMessageAt = performance.now();
    if (message.lastEventId) this.#lastEventId = message.lastEventId;
    if (this.state !== "live") {
      this.#lostAt = null;
      this.#setState("live");
    }
    let data;
    try {
      data = JSON.parse(message.data);
    } catch (error) {
      console.warn("telemetry: unreadable message", kind, error);
      return;
    }
    switch (kind) {
      case "snapshot":
        this.telescope = data;
        this.#emitTelescope(new Set(/** @type {Section[]} */ (Object.keys(data))));
        break;
      case "delta":
        this.#merge(data);
        break;
      case "operation":
        if (this.telescope) {
          this.telescope.operation = data;
          this.#emitTelescope(new Set(["operation"]));
        }
        this.dispatchEvent(
          new CustomEvent("operation", { detail: /** @type {Operation} */ (data) }),
        );
        break;
      case "event":
        this.dispatchEvent(
          new CustomEvent("event", { detail: /** @type {FirmwareEvent} */ (data) }),
        );
        break;
    }
  }

  /** @param {Record<string, Record<string, unknown>>} delta `{section: {field: value}}` */
  #merge(delta) {
    const telescope = this.telescope;
    if (!telescope) return; // a delta before any snapshot cannot be applied; the next snapshot will
    /** @type {Set<Section>} */
    const changed = new Set();
    const sections = /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (telescope));
    for (const [section, fields] of Object.entries(delta)) {
      const current = sections[section];
      sections[section] =
        current && typeof current === "object" ? { ...current, ...fields } : { ...fields };
      changed.add(/** @type {Section} */ (section));
    }
    this.#emitTelescope(changed);
  }

  /** @param {Set<Section>} changed */
  #emitTelescope(changed) {
    if (!this.telescope) return;
    /** @type {TelescopeDetail} */
    const detail = { telescope: this.telescope, changed };
    this.dispatchEvent(new CustomEvent("telescope", { detail }));
  }

  /** @param {TelemetryState} next */
  #setState(next) {
    const previous = this.#machine.to(next);
    if (previous !== null) {
      this.dispatchEvent(new CustomEvent("statechange", { detail: { from: previous, to: next } }));
    }
  }
}
