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

import { ApiError } from "./api.js";

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

export class CommandPort {
  /** @param {CommandTransport} transport */
  constructor(transport) {
    this.transport = transport;
  }

  /**
   * Send one command to a telescope.
   *
   * @param {string} telescopeId
   * @param {Command} command
   * @returns {Promise<CommandAck>}
   * @throws {ApiError}
   */
  send(telescopeId, command) {
    return this.transport.send(telescopeId, command, crypto.randomUUID());
  }
}

/** Network failures are retried this many times, with the same key. */
const RETRIES = 2;
const RETRY_DELAY_MS = 400;

/** @implements {CommandTransport} */
export class RestCommands {
  /**
   * @param {ApiClient} api
   * @param {{retries?: number, retryDelayMs?: number, clientId?: string | null}} [options]
   *   `clientId`: the page's id, sent as `Scopelink-Client` (one controller with its channel)
   */
  constructor(api, { retries = RETRIES, retryDelayMs = RETRY_DELAY_MS, clientId = null } = {}) {
    this.api = api;
    this.retries = retries;
    this.retryDelayMs = retryDelayMs;
    this.clientId = clientId;
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
          headers: {
            "Idempotency-Key": id,
            ...(this.clientId ? { "Scopelink-Client": this.clientId } : {}),
          },
        });
      } catch (error) {
        if (!(error instanceof ApiError) || !error.unreachable || attempt >= this.retries) {
          throw error;
        }
        await new Promise((resolve) => setTimeout(resolve, this.retryDelayMs * (attempt + 1)));
      }
    }
  }
}
