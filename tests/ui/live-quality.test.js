// The live view's pure decisions (src/scopelink/ui/lib/live-quality.js), under Node's test runner.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  HeldFrameDetector,
  carryingPath,
  chooseTransport,
  classifyQuality,
  codecPreferences,
  linkFigures,
  parseTier,
  parseTransportKind,
  parseVideoCodec,
  shouldFallBack,
  sourceFps,
} from "../../src/scopelink/ui/lib/live-quality.js";

describe("chooseTransport", () => {
  test("the URL parameter beats the remembered choice, which beats the deployment default", () => {
    assert.equal(chooseTransport({ supported: true, urlParam: "mjpeg", stored: "webrtc" }), "mjpeg");
    assert.equal(chooseTransport({ supported: true, urlParam: "WebRTC", stored: "mjpeg" }), "webrtc");
    assert.equal(
      chooseTransport({ supported: true, stored: "webrtc", deploymentDefault: false }),
      "webrtc",
    );
    assert.equal(chooseTransport({ supported: true, deploymentDefault: false }), "mjpeg");
  });
  test("a missing deployment default means WebRTC", () => {
    assert.equal(chooseTransport({ supported: true }), "webrtc");
    assert.equal(chooseTransport({ supported: true, deploymentDefault: null }), "webrtc");
  });
  test("without WebRTC in the browser it is always MJPEG", () => {
    assert.equal(chooseTransport({ supported: false, urlParam: "webrtc" }), "mjpeg");
  });
  test("nonsense is ignored", () => {
    assert.equal(parseTransportKind("hls"), null);
    assert.equal(chooseTransport({ supported: true, urlParam: "hls", stored: "mjpeg" }), "mjpeg");
  });
});

describe("shouldFallBack", () => {
  test("only while trying, and only after the deadline", () => {
    assert.equal(shouldFallBack({ state: "connecting", since: 0, now: 3_999 }), false);
    assert.equal(shouldFallBack({ state: "connecting", since: 0, now: 4_000 }), true);
    assert.equal(shouldFallBack({ state: "retrying", since: 1_000, now: 6_000 }), true);
    assert.equal(shouldFallBack({ state: "stalled", since: 0, now: 60_000 }), false);
    assert.equal(shouldFallBack({ state: "playing", since: 0, now: 60_000 }), false);
    assert.equal(shouldFallBack({ state: "connecting", since: 0, now: 1_500, afterMs: 1_000 }), true);
  });
});

describe("linkFigures", () => {
  const first = {
    timestamp: 10_000,
    bytesReceived: 1_000_000,
    packetsReceived: 1_000,
    packetsLost: 10,
    framesDecoded: 100,
    jitterBufferDelay: 5,
    jitterBufferEmittedCount: 100,
    currentRoundTripTime: 0.004,
  };
  test("rates over the interval between two snapshots", () => {
    const second = {
      timestamp: 12_000,
      bytesReceived: 1_500_000,
      packetsReceived: 1_095,
      packetsLost: 15,
      framesDecoded: 160,
      jitterBufferDelay: 6.2,
      jitterBufferEmittedCount: 160,
      currentRoundTripTime: 0.006,
    };
    const f = linkFigures(first, second);
    assert.equal(f.bitrateBps, 2_000_000);
    assert.equal(f.fps, 30);
    assert.equal(f.rttMs, 6);
    assert.equal(f.loss, 0.05);
    assert.ok(Math.abs((f.jitterBufferMs ?? 0) - 20) < 1e-9);
  });
  test("the first snapshot gives no rates, and missing counters give nulls", () => {
    const f = linkFigures(null, first);
    assert.equal(f.bitrateBps, null);
    assert.equal(f.loss, null);
    assert.equal(f.rttMs, 4);
    const bare = linkFigures({ timestamp: 0 }, { timestamp: 1_000 });
    assert.deepEqual(bare, { fps: null, bitrateBps: null, rttMs: null, loss: null, jitterBufferMs: null });
  });
});

describe("carryingPath", () => {
  const at = (/** @type {number} */ relay, /** @type {number} */ direct) => ({
    timestamp: 0,
    path: /** @type {const} */ ("direct"), // this end sends on the direct pair
    pairs: {
      r: { bytesReceived: relay, path: /** @type {const} */ ("relay") },
      d: { bytesReceived: direct, path: /** @type {const} */ ("direct") },
    },
  });
  test("the pair the bytes arrive on, not the one this end selected", () => {
    assert.equal(carryingPath(at(1_000, 200), at(90_000, 300)), "relay");
    assert.equal(carryingPath(at(90_000, 300), at(90_100, 80_000)), "direct");
  });
  test("the selected pair's path before there is an interval, or when nothing arrived", () => {
    assert.equal(carryingPath(null, at(90_000, 0)), "direct");
    assert.equal(carryingPath(at(5, 5), at(5, 5)), "direct");
    assert.equal(carryingPath(null, { timestamp: 0 }), null);
  });
});

describe("classifyQuality", () => {
  test("green when every known figure is good", () => {
    assert.equal(classifyQuality({ latencyMs: 60, loss: 0, fps: 10, sourceFps: 10 }), "green");
    assert.equal(classifyQuality({ latencyMs: 149 }), "green");
  });
  test("red when any figure is bad", () => {
    assert.equal(classifyQuality({ latencyMs: 501, loss: 0, fps: 10, sourceFps: 10 }), "red");
    assert.equal(classifyQuality({ latencyMs: 60, loss: 0.11 }), "red");
    assert.equal(classifyQuality({ latencyMs: 60, fps: 3.9, sourceFps: 10 }), "red");
  });
  test("amber in between", () => {
    assert.equal(classifyQuality({ latencyMs: 150 }), "amber");
    assert.equal(classifyQuality({ latencyMs: 60, loss: 0.05 }), "amber");
    assert.equal(classifyQuality({ latencyMs: 60, fps: 7, sourceFps: 10 }), "amber");
  });
  test("unknown with nothing known; an unknown source rate is left out", () => {
    assert.equal(classifyQuality({}), "unknown");
    assert.equal(classifyQuality({ fps: 1, sourceFps: null }), "unknown");
  });
});

describe("sourceFps", () => {
  test("frame numbers over emit time, counting frames the viewer skipped", () => {
    assert.equal(sourceFps([{ frame: 10, emitMs: 1_000 }]), null);
    assert.equal(
      sourceFps([
        { frame: 10, emitMs: 1_000 },
        { frame: 12, emitMs: 1_200 },
        { frame: 20, emitMs: 2_000 },
      ]),
      10,
    );
  });
});

describe("codec choice", () => {
  const codecs = [
    { mimeType: "video/VP8" },
    { mimeType: "video/rtx", sdpFmtpLine: "apt=96" },
    { mimeType: "video/H264", sdpFmtpLine: "profile-level-id=42e01f" },
    { mimeType: "video/H264", sdpFmtpLine: "profile-level-id=640c1f" },
    { mimeType: "video/AV1" },
    { mimeType: "video/red" },
  ];
  const mimes = (/** @type {{mimeType: string}[]} */ list) => list.map((c) => c.mimeType);

  test("?codec= accepts h264 and vp8, in any case, and nothing else", () => {
    assert.equal(parseVideoCodec("H264"), "h264");
    assert.equal(parseVideoCodec(" vp8 "), "vp8");
    assert.equal(parseVideoCodec("av1"), null);
    assert.equal(parseVideoCodec(null), null);
  });
  test("?tier= accepts full and reduced, in any case; anything else is the server's choice", () => {
    assert.equal(parseTier("Reduced"), "reduced");
    assert.equal(parseTier(" full "), "full");
    assert.equal(parseTier("source"), undefined);
    assert.equal(parseTier(null), undefined);
  });
  test("without a choice H.264 comes first and nothing is left out", () => {
    const ordered = codecPreferences(codecs, null);
    assert.deepEqual(mimes(ordered).slice(0, 2), ["video/H264", "video/H264"]);
    assert.equal(ordered.length, codecs.length);
  });
  test("a chosen codec is offered alone, with retransmission", () => {
    assert.deepEqual(mimes(codecPreferences(codecs, "vp8")), ["video/VP8", "video/rtx"]);
    assert.deepEqual(mimes(codecPreferences(codecs, "h264")), [
      "video/H264",
      "video/H264",
      "video/rtx",
    ]);
  });
  test("a codec the browser cannot receive gives an empty list", () => {
    assert.deepEqual(codecPreferences([{ mimeType: "video/H264" }], "vp8"), []);
  });
});

describe("HeldFrameDetector", () => {
  /**
   * Frames at `fps`, each presented `holdMs` after receipt plus 10 ms of decoding.
   * @param {HeldFrameDetector} detector
   * @param {{fps: number, holdMs: number, count: number, from?: number}} run
   */
  function feed(detector, { fps, holdMs, count, from = 1_000 }) {
    const acted = [];
    for (let i = 0; i < count; i++) {
      const receiveTime = from + (i * 1000) / fps;
      const frame = {
        receiveTime,
        presentationTime: receiveTime + 10 + holdMs,
        processingDuration: 0.01,
      };
      if (detector.add(frame)) acted.push(i);
    }
    return acted;
  }

  test("a normal video is left alone", () => {
    const detector = new HeldFrameDetector();
    assert.deepEqual(feed(detector, { fps: 10, holdMs: 12, count: 200 }), []);
    assert.deepEqual(feed(detector, { fps: 30, holdMs: 25, count: 600 }), []);
  });

  test("frames held a frame interval (measured: ~95 ms at 10 fps) re-attach once the window is full", () => {
    const detector = new HeldFrameDetector({ window: 20, settleMs: 0 });
    assert.deepEqual(feed(detector, { fps: 10, holdMs: 95, count: 25 }), [19]);
    assert.equal(detector.times, 1);
  });

  test("the first seconds of a session are not judged", () => {
    // Held while playback starts, then normal: nothing to do.
    const detector = new HeldFrameDetector({ window: 20, settleMs: 3_000 });
    assert.deepEqual(feed(detector, { fps: 30, holdMs: 80, count: 80 }), []);
    assert.deepEqual(feed(detector, { fps: 30, holdMs: 15, count: 200, from: 3_700 }), []);
    // Held for good: judged once the settling time is over (frame 90 + a full window).
    const stuck = new HeldFrameDetector({ window: 20, settleMs: 3_000 });
    assert.deepEqual(feed(stuck, { fps: 30, holdMs: 80, count: 200 }), [109]);
  });

  test("at most once per cooldown and maxTimes per session", () => {
    const detector = new HeldFrameDetector({ window: 20, cooldownMs: 30_000, maxTimes: 3 });
    // (the first 3 s settle, then the window fills)
    // Held for 200 s at 10 fps: acts at once, then every 30 s, three times in all.
    const acted = feed(detector, { fps: 10, holdMs: 95, count: 2000 });
    assert.equal(acted.length, 3);
    assert.ok(acted[1] - acted[0] >= 300 && acted[2] - acted[1] >= 300, String(acted));
  });

  test("a slow source is judged against its own frame interval", () => {
    // 1 fps: 120 ms of hold is well under half an interval; 900 ms is the stuck state.
    assert.deepEqual(feed(new HeldFrameDetector(), { fps: 1, holdMs: 120, count: 40 }), []);
    const slow = new HeldFrameDetector({ settleMs: 0 });
    assert.deepEqual(feed(slow, { fps: 1, holdMs: 900, count: 25 }), [19]);
  });

  test("frames without receipt times (not WebRTC) are ignored", () => {
    const detector = new HeldFrameDetector({ window: 2 });
    for (let i = 0; i < 10; i++) {
      assert.equal(detector.add({ receiveTime: 0, presentationTime: 100 * i + 500 }), false);
    }
  });
});
