/**
 * The UI's one status source: keeps one telescope's `TelescopeState` from `snapshot` and `delta`
 * messages and re-emits what happens, whatever transport carries them. The transport behind it
 * is `SseStatus` (server-sent events, `GET /api/telescopes/{id}/events`), which resumes from the
 * last event id after a break.
 *
 * Events: `statechange` (the connection state below), `telescope` (detail: the state and the
 * sections that changed), `operation` (an Operation), `event` (a raw firmware event, for the log).
 *
 * Connection states, and why each exists:
 * - `idle`: not following any telescope.
 * - `connecting`: the first connection for this telescope; nothing to show yet.
 * - `live`: the stream is open; the state shown is current.
 * - `reconnecting`: the stream broke; the transport retries, resuming from the last message, so
 *   nothing is missed. What is shown is the last known state.
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

/** @typedef {"snapshot" | "delta" | "operation" | "event"} MessageKind */

/**
 * What a status transport tells the service.
 *
 * @typedef {object} StatusSink
 * @property {() => void} opened the stream is open
 * @property {() => void} lost the stream broke (the transport retries by itself)
 * @property {(kind: MessageKind, data: unknown) => void} message one message, parsed
 */

/**
 * What carries status messages: opened for one telescope, reopened (resuming after the last
 * message) when the service asks, closed.
 *
 * @typedef {object} StatusTransport
 * @property {(telescopeId: string, sink: StatusSink) => void} open follow from a snapshot
 * @property {() => void} reopen reopen now, resuming
 * @property {() => void} close
 */

/**
 * Status over server-sent events. Our own reopen resumes with `since`; the browser's own retries
 * send `Last-Event-ID`. A stream the browser gave up on (an HTTP error such as a restarting
 * proxy's 502) is reopened with capped backoff.
 *
 * @implements {StatusTransport}
 */
export class SseStatus {
  /** @type {EventSource | null} */
  #source = null;
  /** @type {string | null} */
  #telescopeId = null;
  /** @type {StatusSink | null} */
  #sink = null;
  /** @type {string | null} */
  #lastEventId = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #retryTimer = null;
  #backoff = new Backoff({ initialMs: 1_000, maximumMs: 15_000 });

  /**
   * @param {ApiClient} api
   * @param {(url: string) => EventSource} [eventSource] for tests
   */
  constructor(api, eventSource) {
    this.api = api;
    this.createEventSource = eventSource ?? ((url) => new EventSource(url));
  }

  /**
   * @param {string} telescopeId
   * @param {StatusSink} sink
   */
  open(telescopeId, sink) {
    this.close();
    this.#telescopeId = telescopeId;
    this.#sink = sink;
    this.#lastEventId = null;
    this.#backoff.reset();
    this.#connect();
  }

  reopen() {
    if (!this.#telescopeId) return;
    this.#backoff.reset();
    this.#scheduleReopen(0);
  }

  close() {
    this.#disconnect();
    this.#telescopeId = null;
    this.#sink = null;
  }

  #connect() {
    const sink = this.#sink;
    if (!this.#telescopeId || !sink) return;
    const path = `/api/telescopes/${encodeURIComponent(this.#telescopeId)}/events`;
    const source = this.createEventSource(this.api.url(path, { since: this.#lastEventId }));
    this.#source = source;
    source.onopen = () => {
      if (source !== this.#source) return;
      this.#backoff.reset();
      sink.opened();
    };
    source.onerror = () => {
      if (source !== this.#source) return;
      sink.lost();
      if (source.readyState === EventSource.CLOSED) this.#scheduleReopen(this.#backoff.next());
    };
    for (const kind of /** @type {MessageKind[]} */ (["snapshot", "delta", "operation", "event"])) {
      source.addEventListener(kind, (event) => {
        if (source !== this.#source) return;
        const message = /** @type {MessageEvent} */ (event);
        if (message.lastEventId) this.#lastEventId = message.lastEventId;
        let data;
        try {
          data = JSON.parse(message.data);
        } catch (error) {
          console.warn("telemetry: unreadable message", kind, error);
          return;
        }
        sink.message(kind, data);
      });
    }
  }

  #disconnect() {
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    this.#retryTimer = null;
    this.#source?.close();
    this.#source = null;
  }

  /** @param {number} delayMs */
  #scheduleReopen(delayMs) {
    this.#disconnect();
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      this.#connect();
    }, delayMs);
  }
}

/**
 * @typedef {object} TelemetryOptions
 * @property {number} [offlineAfterMs] broken this long: `offline` instead of `reconnecting`
 * @property {number} [silenceLimitMs] no message this long: assume a dead connection that the
 *   browser has not noticed (a silently dropped Wi-Fi) and reopen it, resuming
 */

export class TelemetryService extends EventTarget {
  #machine = new StateMachine(TELEMETRY_TRANSITIONS, /** @type {TelemetryState} */ ("idle"));
  /** @type {string | null} */
  #telescopeId = null;
  /** @type {ReturnType<typeof setInterval> | null} */
  #watchdog = null;
  /** When the stream broke (ms, `performance.now()`), or null while it is fine. */
  #lostAt = /** @type {number | null} */ (null);

  /** The telescope's state as last received, or null before the first snapshot. */
  telescope = /** @type {TelescopeState | null} */ (null);
  /** When the last message arrived (ms, `performance.now()`), or null. */
  lastMessageAt = /** @type {number | null} */ (null);

  /**
   * @param {StatusTransport} transport
   * @param {TelemetryOptions} [options]
   */
  constructor(transport, { offlineAfterMs = 6_000, silenceLimitMs = 40_000 } = {}) {
    super();
    this.transport = transport;
    this.offlineAfterMs = offlineAfterMs;
    this.silenceLimitMs = silenceLimitMs;
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
    this.telescope = null;
    this.#setState("connecting");
    /** @type {StatusSink} */
    const sink = {
      opened: () => {
        if (this.#telescopeId !== telescopeId) return;
        this.lastMessageAt = performance.now();
        this.#lostAt = null;
        this.#setState("live");
      },
      lost: () => {
        if (this.#telescopeId === telescopeId) this.#lost();
      },
      message: (kind, data) => {
        if (this.#telescopeId === telescopeId) this.#receive(kind, data);
      },
    };
    this.transport.open(telescopeId, sink);
    this.#watchdog = setInterval(() => this.#check(), 1_000);
    globalThis.addEventListener?.("online", this.onOnline);
  }

  /** Stop following; the service can be started again. */
  stop() {
    this.transport.close();
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#watchdog = null;
    globalThis.removeEventListener?.("online", this.onOnline);
    this.#telescopeId = null;
    this.#lostAt = null;
    this.#setState("idle");
  }

  #reopenNow() {
    if (this.state === "idle") return;
    this.transport.reopen();
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
      this.transport.reopen();
    }
  }

  /**
   * @param {MessageKind} kind
   * @param {unknown} data
   */
  #receive(kind, data) {
    this.lastMessageAt = performance.now();
    if (this.state !== "live") {
      this.#lostAt = null;
      this.#setState("live");
    }
    switch (kind) {
      case "snapshot":
        this.telescope = /** @type {TelescopeState} */ (data);
        this.#emitTelescope(new Set(/** @type {Section[]} */ (Object.keys(this.telescope))));
        break;
      case "delta":
        this.#merge(/** @type {Record<string, Record<string, unknown>>} */ (data));
        break;
      case "operation":
        if (this.telescope) {
          this.telescope.operation = /** @type {Operation} */ (data);
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
