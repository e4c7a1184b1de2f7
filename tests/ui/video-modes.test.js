// The video views in words (src/scopelink/ui/lib/video-modes.js), under Node's test runner.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  deliveryText,
  formatElapsed,
  isVideoView,
  RecordingClock,
  recordingText,
  streamFactsText,
} from "../../src/scopelink/ui/lib/video-modes.js";

const view = (fields) => ({ mode: "moon", stage: "RTSP", state: "working", target_name: null, zoom: 1, ...fields });
const recording = (fields) => ({
  active: false, state: null, lapse_ms: null, saved_frames: null, file_saved: null, ...fields,
});
const live = (fields) => ({
  source: "video", passthrough: false, passthrough_refusal: null, codec: "h264",
  profile: "Constrained Baseline", level: "4", width: 1920, height: 1080, frame_rate: 30,
  keyframe_interval_s: 2, bitrate_bps: 4_200_000, ...fields,
});

describe("isVideoView", () => {
  test("only the RTSP stage streams video, not the Moon mode while it slews", () => {
    assert.equal(isVideoView(view()), true);
    assert.equal(isVideoView(view({ stage: "AutoGoto" })), false);
    assert.equal(isVideoView(view({ mode: "star", stage: "ContinuousExposure" })), false);
    assert.equal(isVideoView(null), false);
  });
});

describe("formatElapsed", () => {
  test("minutes and seconds, hours when there are some", () => {
    assert.equal(formatElapsed(0), "0:00");
    assert.equal(formatElapsed(7_900), "0:07");
    assert.equal(formatElapsed(750_000), "12:30");
    assert.equal(formatElapsed(3_723_000), "1:02:03");
    assert.equal(formatElapsed(-5), "0:00");
  });
});

describe("RecordingClock", () => {
  test("counts on from the last report while recording, and stops with it", () => {
    const clock = new RecordingClock();
    clock.update(recording({ active: true, state: "working", lapse_ms: 1_000 }), 10_000);
    assert.equal(clock.elapsedMs(12_500), 3_500);
    // The same report again (another section changed) does not restart the count.
    clock.update(recording({ active: true, state: "working", lapse_ms: 1_000 }), 12_000);
    assert.equal(clock.elapsedMs(12_500), 3_500);
    clock.update(recording({ active: true, state: "working", lapse_ms: 4_000 }), 13_000);
    assert.equal(clock.elapsedMs(13_000), 4_000);
    clock.update(recording({ state: "complete", lapse_ms: 4_200 }), 13_300);
    assert.equal(clock.elapsedMs(60_000), 4_200);
  });
});

describe("recordingText", () => {
  test("says what the recording is doing", () => {
    assert.equal(recordingText(recording({}), 0), "Not recording.");
    assert.equal(
      recordingText(recording({ active: true, state: "working", saved_frames: 360 }), 12_000),
      "Recording 0:12 · 360 frames",
    );
    assert.equal(
      recordingText(recording({ state: "complete", saved_frames: 1, file_saved: true }), 1_000),
      "Saved on the telescope: 0:01 · 1 frame",
    );
    assert.equal(recordingText(recording({ state: "fail" }), 0), "The last recording ended (fail).");
  });
});

describe("deliveryText", () => {
  test("passed through, re-encoded with the reason, or decoded for MJPEG", () => {
    const through = deliveryText(live({ passthrough: true }), "webrtc");
    assert.equal(through.text, "Telescope H.264 · passed through");
    assert.equal(through.passthrough, true);
    const why = "profile High is not (Constrained) Baseline";
    const reencoded = deliveryText(live({ passthrough_refusal: why }), "webrtc");
    assert.equal(reencoded.text, `Telescope video · re-encoded (${why})`);
    assert.equal(reencoded.passthrough, false);
    assert.match(deliveryText(live({ passthrough: true }), "mjpeg").text, /decoded for MJPEG/);
  });

  test("says nothing for the star view's previews", () => {
    assert.equal(deliveryText(live({ source: "preview" }), "webrtc").text, "");
  });
});

describe("streamFactsText", () => {
  test("the facts that are known, in one line", () => {
    assert.equal(
      streamFactsText(live({})),
      "H.264 Constrained Baseline 4 · 1920×1080 · 30 fps · keyframe every 2 s · 4.2 Mbit/s",
    );
    assert.equal(
      streamFactsText(live({ profile: null, level: null, frame_rate: null, keyframe_interval_s: null, bitrate_bps: 800_000 })),
      "H.264 · 1920×1080 · 800 kbit/s",
    );
    assert.equal(streamFactsText(live({ source: "preview" })), "");
  });
});
