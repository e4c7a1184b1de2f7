// The broker mode's pure modules (src/scopelink/ui/lib), under Node's test runner.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { TRANSPORT_PLANS } from "../../src/scopelink/ui/lib/deployment.js";
import { relativeTime } from "../../src/scopelink/ui/lib/relative-time.js";
import {
  credentialsExpireAt,
  RENEW_MARGIN_MS,
  renewalDelayMs,
} from "../../src/scopelink/ui/lib/turn-expiry.js";
import {
  CLOSE_NO_ANSWER,
  CLOSE_OFFLINE,
  classifyRefusal,
} from "../../src/scopelink/ui/lib/signaling-refusal.js";

const TYPE = "https://scopelink.invalid/problems/";

describe("a refusal on the signaling path", () => {
  test("an offline telescope is retried, by its close code or its problem", () => {
    assert.deepEqual(classifyRefusal({ code: CLOSE_OFFLINE, reason: "offline" }), {
      kind: "offline",
      final: false,
      detail: "offline",
    });
    const problem = { status: 503, type: `${TYPE}offline`, detail: "is it running?" };
    assert.equal(classifyRefusal(problem).kind, "offline");
  });

  test("a proxy that did not answer is retried", () => {
    assert.equal(classifyRefusal({ code: CLOSE_NO_ANSWER }).kind, "no-answer");
    assert.equal(classifyRefusal({ status: 504, type: `${TYPE}no-answer` }).final, false);
  });

  test("the proxy's refusal of a grant is final, and told apart from a sign-in by its type", () => {
    const grant = classifyRefusal({ status: 401, type: `${TYPE}grant-refused`, detail: "expired" });
    assert.deepEqual(grant, { kind: "grant-refused", final: true, detail: "expired" });
    const signIn = classifyRefusal({ status: 401, detail: "sign in first" });
    assert.equal(signIn.kind, "signed-out");
    assert.equal(signIn.final, true);
  });

  test("no role, or a revoked one, is final; a rate limit is retried", () => {
    const revoked = classifyRefusal({ status: 403, type: `${TYPE}revoked`, detail: "revoked" });
    assert.equal(revoked.kind, "no-access");
    assert.equal(revoked.final, true);
    assert.equal(classifyRefusal({ code: 4403 }).kind, "no-access");
    assert.equal(classifyRefusal({ code: 4429 }).final, false);
  });
});

describe("what each deployment offers the page", () => {
  test("a broker carries no media, commands or status: WebRTC and its channel only", () => {
    const { catalogue, ...carried } = TRANSPORT_PLANS.broker;
    for (const offered of Object.values(carried)) assert.equal(offered, false);
    for (const offered of Object.values(TRANSPORT_PLANS.serve)) assert.equal(offered, true);
    // Names are searched on the broker; the proxy looks the chosen name up itself.
    assert.equal(catalogue, true);
  });
});

describe("a relative time", () => {
  test("says how far a moment is, in the unit a person would", () => {
    assert.equal(relativeTime(7 * 24 * 3600 * 1000), "in 7 days");
    assert.equal(relativeTime(-2 * 60 * 1000), "2 min ago");
  });
});

describe("TURN credentials", () => {
  test("the earliest expiry among the servers' usernames is when a relay would be lost", () => {
    const servers = [
      { urls: "stun:turn.example:3478" },
      { urls: "turn:turn.example:3478", username: "1800000600:account-a", credential: "x" },
      { urls: "turns:turn.example:5349", username: "1800000300:account-a", credential: "y" },
    ];
    assert.equal(credentialsExpireAt(servers), 1_800_000_300_000);
    assert.equal(credentialsExpireAt([{ urls: "turn:t", username: "alice" }]), null);
  });

  test("a connection is renewed a margin before they expire, never at once", () => {
    const now = 1_800_000_000_000;
    assert.equal(renewalDelayMs(now + 3600_000, now), 3600_000 - RENEW_MARGIN_MS);
    assert.equal(renewalDelayMs(now + 60_000, now), 10_000);
    assert.equal(renewalDelayMs(null, now), null);
  });
});
