// The UI's command port and status source with a scripted transport behind each: what any
// transport (REST and SSE today, the data channel next) can rely on. `npm test`.
import assert from "node:assert/strict";
import { test } from "node:test";

import { CommandPort } from "../../src/scopelink/ui/services/commands.js";
import { TelemetryService } from "../../src/scopelink/ui/services/telemetry.js";

/** A status transport the test drives: it keeps the sink the service gave it. */
class ScriptedStatus {
  /** @type {any} */
  sink = null;
  opened = [];
  reopens = 0;
  closes = 0;
  open(telescopeId, sink) {
    this.opened.push(telescopeId);
    this.sink = sink;
  }
  reopen() {
    this.reopens += 1;
  }
  close() {
    this.closes += 1;
  }
}

function follow(service) {
  const seen = { states: [], telescopes: [], operations: [], events: [] };
  service.addEventListener("statechange", (e) => seen.states.push(e.detail.to));
  service.addEventListener("telescope", (e) =>
    seen.telescopes.push([...e.detail.changed].sort()),
  );
  service.addEventListener("operation", (e) => seen.operations.push(e.detail.id));
  service.addEventListener("event", (e) => seen.events.push(e.detail.Event));
  return seen;
}

test("the status source keeps the state from a snapshot and deltas, whatever carries them", () => {
  const transport = new ScriptedStatus();
  const service = new TelemetryService(transport);
  const seen = follow(service);
  service.start("scope");
  try {
    assert.deepEqual(transport.opened, ["scope"]);
    assert.equal(service.state, "connecting");
    transport.sink.message("delta", { mount: { tracking: true } }); // before any snapshot
    assert.equal(service.telescope, null, "a delta without a snapshot is not applied");
    transport.sink.message("snapshot", { id: "scope", mount: { motion: "idle", tracking: false } });
    assert.equal(service.state, "live");
    transport.sink.message("delta", { mount: { tracking: true }, focuser: { position: 7 } });
    assert.deepEqual(service.telescope?.mount, { motion: "idle", tracking: true });
    assert.deepEqual(service.telescope?.focuser, { position: 7 });
    transport.sink.message("operation", { id: "op-1", state: "working" });
    transport.sink.message("event", { Event: "ScopeGoto", state: "working" });
    assert.deepEqual(seen.telescopes, [["id", "mount"], ["focuser", "mount"], ["operation"]]);
    assert.deepEqual(seen.operations, ["op-1"]);
    assert.deepEqual(seen.events, ["ScopeGoto"]);
  } finally {
    service.stop();
  }
  assert.equal(service.state, "idle");
  assert.equal(transport.closes >= 1, true);
});

test("a broken stream shows reconnecting, then offline, and live again when it returns", () => {
  const transport = new ScriptedStatus();
  const service = new TelemetryService(transport, { offlineAfterMs: 0 });
  const seen = follow(service);
  service.start("scope");
  try {
    transport.sink.opened();
    transport.sink.lost();
    assert.deepEqual(seen.states, ["connecting", "live", "reconnecting", "offline"]);
    transport.sink.message("snapshot", { id: "scope" });
    assert.equal(service.state, "live");
  } finally {
    service.stop();
  }
});

test("a transport left behind by a new start cannot touch the new telescope's state", () => {
  const transport = new ScriptedStatus();
  const service = new TelemetryService(transport);
  service.start("first");
  const oldSink = transport.sink;
  service.start("second");
  try {
    oldSink.message("snapshot", { id: "first" });
    assert.equal(service.telescope, null);
    transport.sink.message("snapshot", { id: "second" });
    assert.equal(service.telescope?.id, "second");
  } finally {
    service.stop();
  }
});

test("each command gets its own id, the idempotency key its transport sends", async () => {
  const sent = [];
  const port = new CommandPort({
    send: async (telescopeId, command, id) => {
      sent.push({ telescopeId, command, id });
      return { command_id: `cmd-${sent.length}`, status: "completed" };
    },
  });
  const ack = await port.send("scope", { type: "focus", delta: 10 });
  await port.send("scope", { type: "focus", delta: 10 });
  assert.equal(ack.command_id, "cmd-1");
  assert.deepEqual(sent[0].command, { type: "focus", delta: 10 });
  assert.notEqual(sent[0].id, sent[1].id, "two clicks are two commands");
  assert.match(sent[0].id, /^[0-9a-f-]{36}$/);
});

test("offline: a setting waits and goes once, a move is refused, a stale goto is dropped", async () => {
  const { ApiError } = await import("../../src/scopelink/ui/services/api.js");
  const { QUEUE_DEADLINE_MS, offlineRule } = await import(
    "../../src/scopelink/ui/services/commands.js"
  );
  assert.equal(offlineRule({ type: "move", direction: "up" }), "never");
  assert.equal(offlineRule({ type: "goto", target: "M 81" }), "deadline");
  assert.equal(offlineRule({ type: "set_gain", gain: 80 }), "replay");
  let online = false;
  const sent = [];
  const port = new CommandPort({
    send: async (telescopeId, command, id) => {
      if (!online) throw new ApiError({ type: "x", title: "Unreachable", status: 0 });
      sent.push([command.type, id]);
      return { command_id: `cmd-${sent.length}`, status: "completed" };
    },
  });
  const gain = port.send("scope", { type: "set_gain", gain: 90 });
  const goto = port.send("scope", { type: "goto", target: "M 81" });
  const kept = port.send("scope", { type: "set_gain", gain: 91 });
  await assert.rejects(port.send("scope", { type: "move", direction: "up" }), /never sent late/);
  await new Promise((resolve) => setTimeout(resolve, 0));
  assert.deepEqual(
    port.queue.map((e) => e.state),
    ["queued", "queued", "queued"],
  );
  port.queue[1].queuedAt -= QUEUE_DEADLINE_MS + 1; // the goto waited too long
  assert.ok(port.cancel(port.queue[2].id));
  await assert.rejects(kept, /cancelled/);
  online = true;
  await port.flush();
  assert.equal((await gain).command_id, "cmd-1");
  await assert.rejects(goto, /too late/);
  assert.deepEqual(
    sent.map(([type]) => type),
    ["set_gain"],
  );
  assert.deepEqual(
    port.queue.map((e) => e.state),
    ["sent", "dropped", "cancelled"],
  );
  await port.flush();
  assert.equal(sent.length, 1, "sent once");
});

test("a command request that gets no answer gives up in time, sooner when offline", async () => {
  const { ApiClient, ApiError } = await import("../../src/scopelink/ui/services/api.js");
  const { RestCommands } = await import("../../src/scopelink/ui/services/commands.js");
  const keys = [];
  // A link gone silent: the request is never answered, only its signal can end it.
  const silent = (url, init) =>
    new Promise((_, reject) => {
      keys.push(init.headers["Idempotency-Key"]);
      init.signal?.addEventListener("abort", () => reject(init.signal.reason));
    });
  const api = new ApiClient({ fetch: silent });
  let live = true;
  const rest = new RestCommands(api, {
    retries: 2,
    retryDelayMs: 1,
    timeoutMs: 300,
    offlineTimeoutMs: 30,
    connected: () => live,
  });
  const unanswered = (error) =>
    error instanceof ApiError && error.unreachable && /no answer within/.test(error.detail);
  let started = Date.now();
  await assert.rejects(rest.send("scope", { type: "focus", delta: 10 }, "key-1"), unanswered);
  const took = Date.now() - started;
  assert.ok(took >= 290 && took < 2_000, `gave up after ${took} ms`);
  assert.deepEqual(keys, ["key-1"], "not tried again: it may have arrived");
  assert.equal(api.reachability, "unreachable");

  live = false; // the status stream is down too: give up sooner
  started = Date.now();
  await assert.rejects(rest.send("scope", { type: "focus", delta: 10 }, "key-2"), unanswered);
  assert.ok(Date.now() - started < 250, "sooner while offline");

  // A refused connection (an error at once) is tried again with the same key.
  keys.length = 0;
  const refused = (url, init) => {
    keys.push(init.headers["Idempotency-Key"]);
    return Promise.reject(new TypeError("Failed to fetch"));
  };
  const again = new RestCommands(new ApiClient({ fetch: refused }), { retries: 2, retryDelayMs: 1 });
  await assert.rejects(again.send("scope", { type: "stop" }, "key-3"), (e) => e.unreachable);
  assert.deepEqual(keys, ["key-3", "key-3", "key-3"]);
});
