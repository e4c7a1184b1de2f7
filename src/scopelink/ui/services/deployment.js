/**
 * Which server the page was loaded from (lib/deployment.js says what each offers). The page
 * asks `GET /api/session` first, as it always has: `scopelink serve` answers it, so a page on
 * `serve` makes no request it did not make before. A server without it (404) is asked
 * `GET /api/broker`, which a broker answers with `{"broker": true, …}`.
 */

import { ApiError } from "./api.js";

/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {import('./api.js').AccessInfo} AccessInfo */
/** @typedef {import('../types/protocol').BrokerAbout} BrokerAbout */

/**
 * @typedef {{kind: "serve", session: AccessInfo} | {kind: "broker", about: BrokerAbout}} Deployment
 */

/** Why the grant in the link was refused, if it was (for the page to say). */
export let grantRefusal = /** @type {string | null} */ (null);

/** The grant in the page's address (`#grant=…`), or null. */
function grantInLink() {
  const match = /^#grant=([^&]+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

/**
 * @param {ApiClient} api
 * @returns {Promise<Deployment>}
 * @throws {ApiError} when neither answers (the server is unreachable, or is neither)
 */
export async function detectDeployment(api) {
  const grant = grantInLink();
  if (grant !== null) {
    // A link from the broker to the telescope's own page on its network: exchange the grant
    // (once) for a session here, and take it out of the address bar and history.
    history.replaceState(null, "", location.pathname + location.search);
    try {
      /** @type {AccessInfo} */
      const session = await api.request("POST", "/api/session/grant", { body: { grant } });
      return { kind: "serve", session };
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      grantRefusal = error.message;
    }
  }
  try {
    return { kind: "serve", session: await api.session() };
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
  }
  /** @type {Partial<BrokerAbout> | null} */
  const about = await api.get("/api/broker");
  if (about?.broker === true) return { kind: "broker", about: /** @type {BrokerAbout} */ (about) };
  throw new ApiError({
    type: "about:blank",
    title: "Unknown server",
    status: 404,
    detail: "this server is neither scopelink nor a scopelink broker",
  });
}
