/**
 * The one way the UI commands a telescope. Views and controllers hold a `CommandPort` and send
 * typed commands (`{type: "focus", delta: 10}`, the server's `Command` union); the port gives
 * each command an id that is its idempotency key and hands it to the transport behind it.
 *
 * Transports: `RestCommands` (`POST /api/telescopes/{id}/commands` with the id as
 * `Idempotency-Key`; a network failure is retried with the same key, so a command that did
 * arrive runs once and its first answer comes back). A command that fails rejects with an
 * `ApiError` carrying the server's problem, whatever the transport.
 */

import { ApiError, NO_ANSWER } from "./api.js";

/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {import('../types/protocol').Command} Command */
/** @typedef {import('../types/protocol').CommandAck} CommandAck */

/**
 * What carries commands to the server.
 *
 * @typedef {object} CommandTransport
 * @property {(telescopeId: string, command: Command, id: string) => Promise<CommandAck>} send
 *   run `command` once (however often it is sent with the same `id`); its acknowledgement
 */

/**
 * What happens to a command sent while the server cannot be reached: `replay` (a setting: sent
 * when the connection returns), `deadline` (sent when it returns only within `QUEUE_DEADLINE_MS`
 * of the click: a goto nobody wants any more is not made), `never` (motion by hand: a move
 * made late is a move nobody is watching; refused at once).
 *
 * @param {Command} command
 * @returns {"replay" | "deadline" | "never"}
 */
export function offlineRule(command) {
  switch (command.type) {
    case "move":
      return "never";
    case "goto":
    case "park":
    case "focus":
    case "autofocus":
    case "start_view":
    case "start_stack":
    case "start_recording":
      return "deadline";
    default:
      return "replay"; // settings, stop, tracking, zoom, time and place: as the user left them
  }
}

/** Commands kept while offline, at most. */
export const QUEUE_LIMIT = 10;
/** A `deadline` command older than this when the connection returns is dropped. */
export const QUEUE_DEADLINE_MS = 60_000;

/**
 * @typedef {object} QueuedCommand
 * @property {string} id its idempotency key (kept when it is sent at last)
 * @property {string} telescopeId
 * @property {Command} command
 * @property {number} queuedAt `Date.now()` when it was queued
 * @property {"replay" | "deadline"} rule
 * @property {"queued" | "sending" | "sent" | "failed" | "dropped" | "cancelled"} state
 * @property {string} note what happened to it, in words
 */

/**
 * Events: `queue` (detail: the queued commands, and those settled since, newest last).
 */
export class CommandPort extends EventTarget {
  /** @type {{entry: QueuedCommand, resolve: (ack: CommandAck) => void, reject: (e: unknown) => void}[]} */
  #queue = [];
  /** Every queued command, waiting or settled (the last few), in the order they were given. */
  #entries = /** @type {QueuedCommand[]} */ ([]);
  #flushing = false;

  /** @param {CommandTransport} transport */
  constructor(transport) {
    super();
    this.transport = transport;
  }

  /** The queued commands and the last settled ones, in the order they were given. */
  get queue() {
    return [...this.#entries];
  }

  /**
   * Send one command to a telescope. When the server cannot be reached it is queued by its
   * rule (`offlineRule`) and the promise settles when the queue is sent (`flush`).
   *
   * @param {string} telescopeId
   * @param {Command} command
   * @returns {Promise<CommandAck>}
   * @throws {ApiError}
   */
  async send(telescopeId, command) {
    const id = crypto.randomUUID();
    try {
      return await this.transport.send(telescopeId, command, id);
    } catch (error) {
      if (!(error instanceof ApiError) || !error.unreachable) throw error;
      return this.#enqueue(telescopeId, command, id, error);
    }
  }

  /**
   * @param {string} telescopeId
   * @param {Command} command
   * @param {string} id
   * @param {ApiError} why
   * @returns {Promise<CommandAck>}
   */
  #enqueue(telescopeId, command, id, why) {
    const rule = offlineRule(command);
    if (rule === "never") {
      throw offline(`${why.detail ?? why.title}; a move is never sent late`);
    }
    if (this.#queue.length >= QUEUE_LIMIT) {
      throw offline(`${why.detail ?? why.title}; ${QUEUE_LIMIT} commands already wait`);
    }
    return new Promise((resolve, reject) => {
      /** @type {QueuedCommand} */
      const entry = {
        id,
        telescopeId,
        command,
        queuedAt: Date.now(),
        rule,
        state: "queued",
        note:
          rule === "replay"
            ? "waiting for the connection; sent when it returns"
            : `waiting for the connection; sent if it returns within ${QUEUE_DEADLINE_MS / 1000} s`,
      };
      this.#queue.push({ entry, resolve, reject });
      this.#entries.push(entry);
      this.#changed();
    });
  }

  /**
   * Cancel a queued command (it was never sent); false if it is not waiting any more.
   *
   * @param {string} id
   */
  cancel(id) {
    const index = this.#queue.findIndex((q) => q.entry.id === id && q.entry.state === "queued");
    if (index < 0) return false;
    const [queued] = this.#queue.splice(index, 1);
    this.#settle(queued.entry, "cancelled", "cancelled: never sent");
    queued.reject(offline("cancelled before it was sent"));
    return true;
  }

  /** The connection is back: send what waits, in order, each by its rule, each once. */
  async flush() {
    if (this.#flushing) return;
    this.#flushing = true;
    try {
      while (this.#queue.length) {
        const queued = this.#queue[0];
        const { entry } = queued;
        if (entry.rule === "deadline" && Date.now() - entry.queuedAt > QUEUE_DEADLINE_MS) {
          this.#queue.shift();
          this.#settle(entry, "dropped", "not sent: the connection came back too late");
          queued.reject(offline("not sent: the connection came back too late"));
          continue;
        }
        entry.state = "sending";
        entry.note = "sending";
        this.#changed();
        try {
          // The same id: if an earlier try did arrive, the server answers it without a rerun.
          const ack = await this.transport.send(entry.telescopeId, entry.command, entry.id);
          this.#queue.shift();
          this.#settle(entry, "sent", "sent when the connection came back");
          queued.resolve(ack);
        } catch (error) {
          if (error instanceof ApiError && error.unreachable) {
            entry.state = "queued"; // still offline: keep it, try again later
            entry.note = "still waiting for the connection";
            this.#changed();
            return;
          }
          this.#queue.shift();
          const why = error instanceof ApiError ? error.detail || error.title : String(error);
          this.#settle(entry, "failed", `sent when the connection came back; failed: ${why}`);
          queued.reject(error);
        }
      }
    } finally {
      this.#flushing = false;
    }
  }

  /**
   * @param {QueuedCommand} entry
   * @param {QueuedCommand["state"]} state
   * @param {string} note
   */
  #settle(entry, state, note) {
    entry.state = state;
    entry.note = note;
    const waiting = (/** @type {QueuedCommand} */ e) => e.state === "queued" || e.state === "sending";
    while (this.#entries.filter((e) => !waiting(e)).length > QUEUE_LIMIT) {
      this.#entries.splice(this.#entries.findIndex((e) => !waiting(e)), 1);
    }
    this.#changed();
  }

  #changed() {
    this.dispatchEvent(new CustomEvent("queue", { detail: this.queue }));
  }
}

/** @param {string} detail */
function offline(detail) {
  return new ApiError({
    type: "https://scopelink.invalid/problems/not-sent",
    title: "Not sent",
    status: 0,
    detail,
    outcome: "not_run",
  });
}

/** Network failures are retried this many times, with the same key. */
const RETRIES = 2;
const RETRY_DELAY_MS = 400;
/**
 * A command request with no answer this long has no answer: the server answers within its
 * telescope call's 10 s, and a link that went silent would otherwise hold it for minutes.
 */
export const COMMAND_TIMEOUT_MS = 20_000;
/** The same while the page already knows its connection is down (status not live). */
export const OFFLINE_TIMEOUT_MS = 3_000;

/** @implements {CommandTransport} */
export class RestCommands {
  /**
   * @param {ApiClient} api
   * @param {{retries?: number, retryDelayMs?: number, clientId?: string | null,
   *          timeoutMs?: number, offlineTimeoutMs?: number, connected?: () => boolean}}
   *   [options] `clientId`: the page's id, sent as `Scopelink-Client` (one controller with its
   *   channel); `timeoutMs`: an attempt with no answer this long is unanswered, and is not
   *   tried again (its key keeps a later send from running it twice); `offlineTimeoutMs`: the
   *   same while `connected()` says the page's status stream is down
   */
  constructor(
    api,
    {
      retries = RETRIES,
      retryDelayMs = RETRY_DELAY_MS,
      clientId = null,
      timeoutMs = COMMAND_TIMEOUT_MS,
      offlineTimeoutMs = OFFLINE_TIMEOUT_MS,
      connected = () => true,
    } = {},
  ) {
    this.api = api;
    this.retries = retries;
    this.retryDelayMs = retryDelayMs;
    this.clientId = clientId;
    this.timeoutMs = timeoutMs;
    this.offlineTimeoutMs = offlineTimeoutMs;
    this.connected = connected;
  }

  /**
   * @param {string} telescopeId
   * @param {Command} command
   * @param {string} id
   * @returns {Promise<CommandAck>}
   */
  async send(telescopeId, command, id) {
    const path = `/api/telescopes/${encodeURIComponent(telescopeId)}/commands`;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.api.request("POST", path, {
          body: command,
          timeoutMs: this.connected() ? this.timeoutMs : this.offlineTimeoutMs,
          headers: {
            "Idempotency-Key": id,
            ...(this.clientId ? { "Scopelink-Client": this.clientId } : {}),
          },
        });
      } catch (error) {
        const again =
          error instanceof ApiError && error.unreachable && error.problem.type !== NO_ANSWER;
        if (!again || attempt >= this.retries) throw error;
        await new Promise((resolve) => setTimeout(resolve, this.retryDelayMs * (attempt + 1)));
      }
    }
  }
}
