/**
 * The broker's REST API (src/scopelink/broker/web.py), typed: accounts and sign-in, the
 * telescopes an account may use, pairing, invitations and members. The session is the
 * `scopelink_session` cookie the broker sets at sign-in (HttpOnly: the page never sees it; the
 * browser sends it with every request and with the signaling WebSocket). Failures are the
 * `ApiClient`'s `ApiError`, with the broker's problem detail.
 */

/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {import('../types/protocol').BrokerAbout} BrokerAbout */
/** @typedef {import('../types/protocol').Credentials} Credentials */
/** @typedef {import('../types/protocol').SignedIn} SignedIn */
/** @typedef {import('../types/protocol').Me} Me */
/** @typedef {import('../types/protocol').ClaimRequest} ClaimRequest */
/** @typedef {import('../types/protocol').Membership} Membership */
/** @typedef {import('../types/protocol').InvitedRole} InvitedRole */
/** @typedef {import('../types/protocol').Invitation} Invitation */
/** @typedef {import('../types/protocol').TelescopeDetails} TelescopeDetails */
/** @typedef {import('../types/protocol').GrantAnswer} GrantAnswer */

/** @param {string} telescopeId */
const telescopePath = (telescopeId) => `/api/telescopes/${encodeURIComponent(telescopeId)}`;

export class BrokerApi {
  /** @param {ApiClient} api */
  constructor(api) {
    this.api = api;
  }

  /** @returns {Promise<BrokerAbout>} */
  about() {
    return this.api.get("/api/broker");
  }

  /**
   * You and your telescopes; an `ApiError` with status 401 when signed out.
   *
   * @returns {Promise<Me>}
   */
  me() {
    return this.api.get("/api/me");
  }

  /**
   * @param {Credentials} credentials
   * @returns {Promise<SignedIn>}
   */
  signIn(credentials) {
    return this.api.request("POST", "/api/login", { body: credentials });
  }

  /**
   * Create an account (and sign in).
   *
   * @param {Credentials} credentials
   * @returns {Promise<SignedIn>}
   */
  signUp(credentials) {
    return this.api.request("POST", "/api/accounts", { body: credentials });
  }

  /** @returns {Promise<void>} */
  signOut() {
    return this.api.request("POST", "/api/logout");
  }

  /**
   * Pair the proxy that shows `code`: its telescope becomes yours.
   *
   * @param {ClaimRequest} claim
   * @returns {Promise<Membership>}
   */
  claim(claim) {
    return this.api.request("POST", "/api/pairings/claim", { body: claim });
  }

  /**
   * One telescope; its members and latest connections when you own it.
   *
   * @param {string} telescopeId
   * @returns {Promise<TelescopeDetails>}
   */
  telescope(telescopeId) {
    return this.api.get(telescopePath(telescopeId));
  }

  /**
   * An invitation code (shown once, used once) for someone to join as `role`.
   *
   * @param {string} telescopeId
   * @param {InvitedRole} role
   * @returns {Promise<Invitation>}
   */
  invite(telescopeId, role) {
    return this.api.request("POST", `${telescopePath(telescopeId)}/invitations`, {
      body: { role },
    });
  }

  /**
   * @param {string} code
   * @returns {Promise<Membership>}
   */
  accept(code) {
    return this.api.request("POST", "/api/invitations/accept", { body: { code } });
  }

  /**
   * A grant (valid a minute, used once) for the telescope's own page on its network.
   *
   * @param {string} telescopeId
   * @returns {Promise<GrantAnswer>}
   */
  grant(telescopeId) {
    return this.api.request("POST", `${telescopePath(telescopeId)}/grant`);
  }

  /**
   * Take a member's role away; their open sessions on the telescope end at once.
   *
   * @param {string} telescopeId
   * @param {string} accountId
   * @returns {Promise<void>}
   */
  revoke(telescopeId, accountId) {
    const path = `${telescopePath(telescopeId)}/members/${encodeURIComponent(accountId)}`;
    return this.api.request("DELETE", path);
  }
}
