// The wide camera's inset in rules and words (src/scopelink/ui/lib/wide-camera.js), under Node's
// test runner.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  camerasOf,
  hasWideCamera,
  insetShown,
  insetStateText,
  shouldStreamWide,
} from "../../src/scopelink/ui/lib/wide-camera.js";

const S30 = ["main", "wide"];
const S50 = ["main"];

describe("hasWideCamera", () => {
  test("the S30 models have one, the S50 and an unknown telescope not", () => {
    assert.equal(hasWideCamera(S30), true);
    assert.equal(hasWideCamera(S50), false);
    assert.equal(hasWideCamera([]), false);
    assert.equal(hasWideCamera(null), false);
    assert.equal(hasWideCamera(undefined), false);
  });
});

describe("camerasOf", () => {
  test("telemetry's device wins: it follows the model the telescope reports on connect", () => {
    assert.deepEqual(camerasOf({ cameras: S30 }, { cameras: S50 }), S30);
  });
  test("before telemetry, the telescope list's summary", () => {
    assert.deepEqual(camerasOf(null, { cameras: S30 }), S30);
    assert.deepEqual(camerasOf(undefined, { cameras: S50 }), S50);
  });
  test("nothing known: no camera, so nothing is streamed", () => {
    assert.deepEqual(camerasOf(null, null), []);
    assert.deepEqual(camerasOf(undefined, {}), []);
  });
});

describe("insetShown", () => {
  test("shown by default and when chosen, hidden only when the user hid it", () => {
    assert.equal(insetShown(null), true);
    assert.equal(insetShown(undefined), true);
    assert.equal(insetShown("shown"), true);
    assert.equal(insetShown("hidden"), false);
  });
});

describe("shouldStreamWide", () => {
  const facts = { telescopeId: "s30", cameras: S30, shown: true, pageHidden: false };
  test("streams while an S30 is selected, the inset shown and the page visible", () => {
    assert.equal(shouldStreamWide(facts), true);
  });
  test("asks nothing of the wide camera otherwise", () => {
    assert.equal(shouldStreamWide({ ...facts, shown: false }), false);
    assert.equal(shouldStreamWide({ ...facts, pageHidden: true }), false);
    assert.equal(shouldStreamWide({ ...facts, cameras: S50 }), false);
    assert.equal(shouldStreamWide({ ...facts, cameras: [] }), false);
    assert.equal(shouldStreamWide({ ...facts, telescopeId: null }), false);
  });
});

describe("insetStateText", () => {
  test("says which camera and whether its picture is current", () => {
    assert.equal(insetStateText("connecting"), "Wide · connecting…");
    assert.equal(insetStateText("playing"), "Wide · live");
    assert.equal(insetStateText("stalled"), "Wide · no picture");
    assert.equal(insetStateText("retrying"), "Wide · no picture, reconnecting…");
    assert.equal(insetStateText("idle"), "Wide");
  });
});
