// The data-channel protocol's browser client against a scripted server on fake channels: the
// protocol's rules (docs/protocol.md) a browser relies on. `npm test`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { ApiError } from "../../src/scopelink/ui/services/api.js";
import { ChannelClient } from "../../src/scopelink/ui/services/datachannel.js";

/** One side of a data channel: what the client sent, and a way to deliver to it. */
class FakeChannel {
  readyState = "connecting";
  sent = [];
  onopen = null;
  onmessage = null;
  onclose = null;
  constructor(label, options) {
    this.label = label;
    this.options = options;
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close() {
    this.readyState = "closed";
  }
  open() {
    this.readyState = "open";
    this.onopen?.();
  }
  deliver(message) {
    this.onmessage?.({ data: JSON.stringify({ v: 1, ...message }) });
  }
  drop() {
    this.readyState = "closed";
    this.onclose?.();
  }
}

class FakePeer {
  channels = {};
  createDataChannel(label, options) {
    return (this.channels[label] = new FakeChannel(label, options));
  }
}

const LEASE = {
  holder: null,
  yours: false,
  expires_in_ms: null,
  requested_by: null,
  requested_by_you: false,
  handover_timeout_ms: 10000,
};
const WELCOME = {
  type: "welcome",
  telescope_id: "scope",
  role: "operator",
  server_time_ms: 0,
  keepalive_ms: 60_000,
  deadman_ms: 1500,
  lease: LEASE,
};

function connect(client) {
  const pc = new FakePeer();
  client.attach(pc);
  const { control, telemetry } = pc.channels;
  control.open();
  return { control, telemetry };
}

test("hello, then open at the welcome; a command settles on its result", async () => {
  const client = new ChannelClient({ clientId: "tab-000001", name: "Me" });
  const { control } = connect(client);
  try {
    assert.deepEqual(control.sent[0], {
      v: 1,
      type: "hello",
      client_id: "tab-000001",
      telemetry_seq: null,
      name: "Me",
    });
    assert.equal(client.state, "opening");
    control.deliver(WELCOME);
    assert.equal(client.state, "open");
    const done = client.command("set_gain", { gain: 90 }, { id: "c1" });
    assert.deepEqual(control.sent[1], {
      v: 1,
      type: "command",
      id: "c1",
      name: "set_gain",
      params: { gain: 90 },
    });
    control.deliver({ type: "ack", id: "c1", accepted: true, problem: null });
    const ack = { command_id: "cmd-1", status: "completed", result: { gain: 90 } };
    control.deliver({ type: "result", id: "c1", ok: true, ack, problem: null });
    assert.deepEqual(await done, ack);

    const refused = client.command("park", {}, { id: "c2" });
    const problem = { type: "x/not-in-control", title: "Not in control", status: 409 };
    control.deliver({ type: "ack", id: "c2", accepted: false, problem });
    await assert.rejects(refused, (error) => error instanceof ApiError && error.status === 409);
    assert.equal(client.pending, 0);
  } finally {
    client.close();
  }
});

test("no ack in time: the same id again; a reconnect sends what is unanswered again", async () => {
  const client = new ChannelClient({ clientId: "tab-000002", ackTimeoutMs: 20 });
  let { control, telemetry } = connect(client);
  try {
    control.deliver(WELCOME);
    telemetry.deliver({ type: "telemetry", seq: 7, kind: "snapshot", prev: null, data: {} });
    const done = client.command("focus", { delta: 5 }, { id: "c9" });
    await new Promise((resolve) => setTimeout(resolve, 70));
    const sends = control.sent.filter((m) => m.type === "command");
    assert.ok(sends.length >= 2, "sent again without an ack");
    assert.ok(sends.every((m) => m.id === "c9"), "always with the same id");
    control.deliver({ type: "ack", id: "c9", accepted: true, problem: null });

    control.drop(); // the network goes before the result
    assert.equal(client.state, "closed");
    ({ control, telemetry } = connect(client));
    assert.equal(control.sent[0].telemetry_seq, 7, "the hello resumes telemetry");
    control.deliver(WELCOME);
    const again = control.sent.filter((m) => m.type === "command");
    assert.deepEqual(
      again.map((m) => m.id),
      ["c9"],
    );
    const ack = { command_id: "cmd-3", status: "accepted" };
    control.deliver({ type: "result", id: "c9", ok: true, ack, problem: null });
    assert.deepEqual(await done, ack);
  } finally {
    client.close();
  }
});

test("a delta applies only after the message it names; a gap asks for a snapshot", () => {
  const client = new ChannelClient({ clientId: "tab-000003" });
  const { control, telemetry } = connect(client);
  const deltas = [];
  client.addEventListener("delta", (e) => deltas.push(e.detail));
  try {
    control.deliver(WELCOME);
    const snapshot = { mount: { tracking: false, motion: "idle" }, focuser: { position: 1 } };
    telemetry.deliver({ type: "telemetry", seq: 10, kind: "snapshot", prev: null, data: snapshot });
    telemetry.deliver({
      type: "telemetry",
      seq: 12,
      kind: "delta",
      prev: 10,
      data: { mount: { tracking: true } },
    });
    assert.deepEqual(client.telescope?.mount, { tracking: true, motion: "idle" });
    // Seq 14 names 13, which never came: not applied, and a resync is asked for (once).
    for (const seq of [14, 15]) {
      telemetry.deliver({
        type: "telemetry",
        seq,
        kind: "delta",
        prev: seq - 1,
        data: { focuser: { position: seq } },
      });
    }
    assert.equal(client.telescope?.focuser.position, 1);
    assert.equal(control.sent.filter((m) => m.type === "resync").length, 1);
    telemetry.deliver({
      type: "telemetry",
      seq: 15,
      kind: "snapshot",
      prev: null,
      data: { mount: { tracking: true }, focuser: { position: 15 } },
    });
    assert.equal(client.telescope?.focuser.position, 15);
    assert.equal(client.seq, 15);
    assert.equal(deltas.length, 1);
  } finally {
    client.close();
  }
});

test("the channels are made as the protocol says", () => {
  const client = new ChannelClient();
  const pc = new FakePeer();
  client.attach(pc);
  assert.equal(pc.channels.control.options, undefined);
  assert.deepEqual(pc.channels.telemetry.options, { ordered: false, maxRetransmits: 0 });
  assert.match(client.clientId, /^[A-Za-z0-9_-]{8,64}$/);
  client.close();
});

test("the lease in words and the actions offered", async () => {
  const { describeLease } = await import("../../src/scopelink/ui/views/control-panel.js");
  const alice = { name: "Alice", transport: "datachannel" };
  assert.deepEqual(describeLease(null).actions, []);
  assert.deepEqual(describeLease({ ...LEASE }).actions, ["take"]);
  assert.deepEqual(describeLease({ ...LEASE, holder: alice }).actions, ["ask"]);
  assert.match(describeLease({ ...LEASE, holder: alice }).text, /^Alice controls/);
  const asking = { ...LEASE, holder: alice, requested_by_you: true, requested_by: {} };
  assert.deepEqual(describeLease(asking).actions, []);
  const asked = { ...LEASE, holder: {}, yours: true, requested_by: alice };
  assert.deepEqual(describeLease(asked).actions, ["grant", "deny"]);
  assert.deepEqual(describeLease({ ...LEASE, holder: {}, yours: true }).actions, ["release"]);
});

test("a move carries a short deadline in the server's time; a setting none", async () => {
  const { ChannelCommands, MOVE_DEADLINE_MS } = await import(
    "../../src/scopelink/ui/services/datachannel.js"
  );
  const client = new ChannelClient({ clientId: "tab-000004" });
  const { control } = connect(client);
  try {
    control.deliver({ ...WELCOME, server_time_ms: Date.now() + 5_000 }); // the server is ahead
    const commands = new ChannelCommands(client);
    void commands.send("scope", { type: "move", direction: "up" }, "m1").catch(() => {});
    void commands.send("scope", { type: "set_gain", gain: 80 }, "g1").catch(() => {});
    const [move, gain] = control.sent.filter((m) => m.type === "command");
    const expected = Date.now() + 5_000 + MOVE_DEADLINE_MS;
    assert.ok(Math.abs(move.deadline_ms - expected) < 100, `${move.deadline_ms} vs ${expected}`);
    assert.equal(gain.deadline_ms, undefined);
  } finally {
    client.close();
  }
});

test("an offer over the channel, then the new connection takes over at its welcome", async () => {
  const client = new ChannelClient({ clientId: "tab-000005" });
  const states = [];
  client.addEventListener("statechange", (e) => states.push(e.detail.to));
  const first = connect(client);
  try {
    first.control.deliver(WELCOME);
    const pending = client.command("focus", { delta: 5 }, { id: "c1" });
    first.control.deliver({ type: "ack", id: "c1", accepted: true, problem: null });

    // A second connection: the first serves until the second's welcome.
    const second = new FakePeer();
    client.attach(second);
    const answered = client.offer("v=0 new", { tier: "reduced" });
    const offer = first.control.sent.at(-1);
    assert.deepEqual(offer, { v: 1, type: "offer", sdp: "v=0 new", tier: "reduced" });
    first.control.deliver({ type: "answer", sdp: "v=0 answer", session_id: "s2" });
    assert.equal((await answered).session_id, "s2");
    assert.equal(client.state, "open");
    assert.equal(first.control.readyState, "open", "the first is still in use");

    second.channels.control.open();
    assert.equal(second.channels.control.sent[0].type, "hello");
    second.channels.telemetry.deliver({ type: "telemetry", seq: 1, kind: "snapshot", prev: null, data: {} });
    assert.equal(client.seq, null, "nothing from the second before its welcome");
    second.channels.control.deliver(WELCOME);
    assert.equal(first.control.readyState, "closed", "the first is let go");
    assert.deepEqual(states, ["opening", "open"], "no gap was shown");
    const resent = second.channels.control.sent.filter((m) => m.type === "command");
    assert.deepEqual(resent.map((m) => m.id), ["c1"], "the unanswered command, on the new one");
    const ack = { command_id: "cmd-1", status: "accepted" };
    second.channels.control.deliver({ type: "result", id: "c1", ok: true, ack, problem: null });
    assert.deepEqual(await pending, ack);
    first.control.deliver({ type: "result", id: "c1", ok: true, ack, problem: null }); // ignored
  } finally {
    client.close();
  }
});

test("a refused or unanswered offer rejects; the channel stays", async () => {
  const client = new ChannelClient({ clientId: "tab-000006" });
  const { control } = connect(client);
  try {
    await assert.rejects(
      new ChannelClient().offer("v=0"),
      /not open/,
      "no channel: refused at once",
    );
    control.deliver(WELCOME);
    const refused = client.offer("v=0");
    const problem = { type: "x/too-many-peers", title: "Too many viewers", status: 503 };
    control.deliver({ type: "error", problem, ref: "offer" });
    await assert.rejects(refused, (error) => error instanceof ApiError && error.status === 503);
    await assert.rejects(client.offer("v=0", { timeoutMs: 20 }), /no answer in time/);
    const lost = client.offer("v=0");
    control.drop();
    await assert.rejects(lost, /closed/);
  } finally {
    client.close();
  }
});

test("the lease machine follows the server and says what happened that the page did not do", async () => {
  const { LeaseTracker } = await import("../../src/scopelink/ui/services/lease.js");
  const alice = { name: "Alice", transport: "datachannel" };
  const me = { name: "Me", transport: "datachannel" };
  const tracker = new LeaseTracker();
  const moves = [];
  tracker.addEventListener("statechange", (e) => moves.push([e.detail.to, e.detail.note]));
  const held = (by, more = {}) => ({ ...LEASE, holder: by, ...more });

  tracker.update(held(alice)); // the channel opens: Alice holds it
  tracker.acted("request");
  tracker.update(held(alice, { requested_by: me, requested_by_you: true }));
  tracker.update(held(alice)); // refused (or no answer)
  tracker.acted("request");
  tracker.update(held(alice, { requested_by: me, requested_by_you: true }));
  tracker.update(held(me, { yours: true })); // handed over
  tracker.update(held(me, { yours: true, requested_by: alice }));
  tracker.acted("grant");
  tracker.update(held(alice));
  tracker.update({ ...LEASE }); // Alice released
  tracker.acted("take");
  tracker.update(held(me, { yours: true }));
  tracker.update({ ...LEASE }); // not released by us: it lapsed
  tracker.update(null); // the channel closed
  tracker.update(held(me, { yours: true, requested_by: alice })); // missed messages: via unknown

  assert.deepEqual(moves, [
    ["other", null],
    ["asking", null],
    ["other", "Alice kept control."],
    ["asking", null],
    ["yours", "Control was handed to you."],
    ["asked", null],
    ["other", "You handed control to Alice."],
    ["free", null],
    ["yours", null],
    ["free", "Your control lapsed: this page was silent too long."],
    ["unknown", null],
    ["asked", null],
  ]);
  assert.equal(tracker.state, "asked");
});
