/**
 * When a connection's TURN credentials expire, and so when to renew it. TURN REST credentials
 * (coturn's shared secret, minted by scopelink) have the username `expiry:user`, `expiry` in
 * Unix seconds; a relayed connection whose credentials expired loses its relay at the next
 * allocation refresh, so the page negotiates a new connection (with fresh credentials) over
 * the data channel a margin before.
 */

/** Renew this long before the credentials expire. */
export const RENEW_MARGIN_MS = 5 * 60_000;
/** Never sooner than this after connecting (short-lived credentials in a test, a bad clock). */
export const MIN_RENEW_DELAY_MS = 10_000;

/**
 * The earliest expiry (epoch ms) among the TURN credentials of `iceServers`, or null when
 * none carries one.
 *
 * @param {ReadonlyArray<{username?: string | null}>} iceServers
 * @returns {number | null}
 */
export function credentialsExpireAt(iceServers) {
  let earliest = null;
  for (const server of iceServers) {
    const match = /^(\d{9,})(?::|$)/.exec(server.username ?? "");
    if (!match) continue;
    const ms = Number(match[1]) * 1000;
    if (earliest === null || ms < earliest) earliest = ms;
  }
  return earliest;
}

/**
 * How long from `nowMs` until a connection using credentials that expire at `expiresAtMs`
 * should be renewed; null: no expiry to mind.
 *
 * @param {number | null} expiresAtMs
 * @param {number} nowMs
 * @returns {number | null}
 */
export function renewalDelayMs(expiresAtMs, nowMs) {
  if (expiresAtMs === null) return null;
  return Math.max(MIN_RENEW_DELAY_MS, expiresAtMs - nowMs - RENEW_MARGIN_MS);
}
