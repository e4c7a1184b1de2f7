/**
 * What a refusal on the signaling path means for a page behind a broker, and whether trying
 * again can help. The broker and the telescope's proxy refuse with an `error` message (its
 * problem: RFC 9457) and close the socket with a code: 4503 the telescope is offline (its proxy
 * is not linked to the broker), 4504 its proxy did not answer, and 4000 + the problem's status
 * for the rest (4401: not signed in, or a grant the proxy refused, problem type
 * `…/grant-refused`; 4403: no role on the telescope, or access revoked, `…/revoked`; 4404;
 * 4429: too many attempts). The problem types (`…/offline`, `…/no-answer`) say which.
 */

/**
 * - `offline`: the telescope's proxy is not connected to the broker (retry: it may come back);
 * - `no-answer`: its proxy did not answer in time (retry);
 * - `retry`: anything else worth another try (a full server, a rate limit, a broken socket);
 * - `signed-out`: the broker does not know us any more (sign in again; no retry);
 * - `grant-refused`: the telescope's proxy refused the broker's grant (no retry);
 * - `no-access`: we have no role on the telescope (never had, or revoked; no retry).
 *
 * @typedef {"offline" | "no-answer" | "retry" | "signed-out" | "grant-refused" | "no-access"}
 *   RefusalKind
 */

/**
 * @typedef {object} Refusal
 * @property {RefusalKind} kind
 * @property {boolean} final trying again cannot help: stop, and say why
 * @property {string} detail the server's words (the problem's detail, else its title or the
 *   close reason)
 */

/** Close codes a broker uses beyond 4000 + status. */
export const CLOSE_OFFLINE = 4503;
export const CLOSE_NO_ANSWER = 4504;

/**
 * @param {{status?: number | null, title?: string | null, detail?: string | null,
 *          type?: string | null, code?: number | null, reason?: string | null}} input
 *   the `error` message's problem, or a close code and reason (or both)
 * @returns {Refusal}
 */
export function classifyRefusal({ status, title, detail, type, code, reason }) {
  const known = status ?? (code != null && code >= 4000 && code < 5000 ? code - 4000 : null);
  const words = detail || title || reason || (code != null ? `closed (${code})` : "refused");
  const offline =
    code === CLOSE_OFFLINE ||
    (known === 503 && ((type ?? "").endsWith("/offline") || title === "Telescope offline"));
  if (offline) return { kind: "offline", final: false, detail: words };
  if (code === CLOSE_NO_ANSWER || known === 504) {
    return { kind: "no-answer", final: false, detail: words };
  }
  if (known === 401) {
    // The broker's own 401 is about our sign-in; the proxy's is about the grant it was shown.
    const grant = (type ?? "").endsWith("/grant-refused") || title === "Grant refused";
    return { kind: grant ? "grant-refused" : "signed-out", final: true, detail: words };
  }
  if (known === 403 || known === 404 || known === 410) {
    return { kind: "no-access", final: true, detail: words };
  }
  return { kind: "retry", final: false, detail: words };
}
