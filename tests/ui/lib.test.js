// The browser's pure modules (src/scopelink/ui/lib), under Node's test runner: `npm test`.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Backoff } from "../../src/scopelink/ui/lib/backoff.js";
import {
  formatDeclination,
  formatRightAscension,
  parseDeclination,
  parseRightAscension,
} from "../../src/scopelink/ui/lib/coordinates.js";
import { FrameRateMeter } from "../../src/scopelink/ui/lib/frame-rate.js";
import {
  CELLS_PER_ROW,
  crc8,
  readFrameStamp,
  SYNC,
  UNITS,
} from "../../src/scopelink/ui/lib/framestamp.js";
import { boundaryOf, MultipartParser } from "../../src/scopelink/ui/lib/multipart.js";
import { StateMachine } from "../../src/scopelink/ui/lib/state-machine.js";

const bytes = (text) => new TextEncoder().encode(text);
const text = (body) => new TextDecoder().decode(body);

/** The server's wire format: `--frame`, then parts each ending with the next delimiter. */
function mjpegStream(bodies, { lengths = true } = {}) {
  let out = "--frame";
  for (const [i, body] of bodies.entries()) {
    const length = lengths ? `Content-Length: ${bytes(body).length}\r\n` : "";
    out += `\r\nContent-Type: image/jpeg\r\n${length}X-Frame-Stamp: ${i};17\r\n\r\n${body}\r\n--frame`;
  }
  return bytes(out + "--\r\n");
}

/** Feed `stream` in pieces of `size` bytes; collect every part. */
function parseInPieces(stream, size) {
  const parser = new MultipartParser("frame");
  const parts = [];
  for (let at = 0; at < stream.length; at += size) {
    parts.push(...parser.push(stream.slice(at, at + size)));
  }
  return { parts, ended: parser.ended };
}

describe("multipart", () => {
  const bodies = ["first\r\n--fram", "second", "third with \r\n--frame-ish bytes"];

  test("parts come out whole however the stream is split", () => {
    for (const lengths of [true, false]) {
      const stream = mjpegStream(bodies.slice(0, lengths ? 3 : 2), { lengths });
      for (let size = 1; size <= stream.length; size += 1) {
        const { parts, ended } = parseInPieces(stream, size);
        assert.deepEqual(
          parts.map((p) => text(p.body)),
          bodies.slice(0, lengths ? 3 : 2),
        );
        assert.equal(parts[1].headers.get("x-frame-stamp"), "1;17");
        assert.ok(ended);
      }
    }
  });

  test("a wrong Content-Length costs one part, not the stream", () => {
    const good = text(mjpegStream(["abc", "def"]));
    const broken = good.replace("Content-Length: 3", "Content-Length: 2");
    const { parts } = parseInPieces(bytes(broken), 7);
    assert.deepEqual(parts.map((p) => text(p.body)), ["ab", "def"]);
  });

  test("the boundary comes from the content type", () => {
    assert.equal(boundaryOf("multipart/x-mixed-replace; boundary=frame"), "frame");
    assert.equal(boundaryOf('multipart/x-mixed-replace;boundary="a b"'), "a b");
    assert.equal(boundaryOf("image/jpeg"), null);
  });
});

describe("framestamp", () => {
  test("CRC-8 is the 0x07 polynomial with initial 0 (check value of '123456789')", () => {
    assert.equal(crc8(bytes("123456789")), 0xf4);
  });

  /** The pixel edges of the cells, rounded down to even as framestamp.py's draw() does. */
  const edges = (width) => (i) => Math.trunc((i + 1) * (width / UNITS)) & ~1;

  /** Draw a stamp as framestamp.py's draw() does, into an RGBA picture. */
  function stamped(width, height, frame, emitMs) {
    const payload = [SYNC, ...[24, 16, 8, 0].map((s) => (frame >>> s) & 0xff)];
    for (let k = 5; k >= 0; k--) payload.push(Math.floor(emitMs / 256 ** k) % 256);
    payload.push(crc8(payload));
    const data = new Uint8ClampedArray(width * height * 4).fill(40);
    const edge = edges(width);
    for (let i = 0; i < payload.length * 8; i++) {
      const bit = (payload[i >> 3] >> (7 - (i & 7))) & 1;
      const row = Math.trunc(i / CELLS_PER_ROW);
      const col = i % CELLS_PER_ROW;
      for (let y = edge(row); y < edge(row + 1); y++) {
        const start = (y * width + edge(col)) * 4;
        data.fill(bit ? 255 : 0, start, (y * width + edge(col + 1)) * 4);
      }
    }
    return { data, width, height };
  }

  test("reads back what was drawn, at any width", () => {
    for (const width of [540, 1080, 1920]) {
      const image = stamped(width, width * 2, 4_000_000_123, 1_795_000_000_123);
      assert.deepEqual(readFrameStamp(image), { frame: 4_000_000_123, emitMs: 1_795_000_000_123 });
    }
  });

  test("no stamp, or a damaged one, reads as null", () => {
    const image = stamped(540, 960, 7, 1_000);
    const edge = edges(540);
    for (let y = edge(0); y < edge(1); y++) {
      // Flip cell 20 of the first row: a bit of the frame number.
      const start = (y * 540 + edge(20)) * 4;
      image.data.fill(image.data[start] ? 0 : 255, start, (y * 540 + edge(21)) * 4);
    }
    assert.equal(readFrameStamp(image), null);
    const black = { data: new Uint8ClampedArray(540 * 960 * 4), width: 540, height: 960 };
    assert.equal(readFrameStamp(black), null);
  });
});

describe("coordinates", () => {
  test("RA in h m s, with colons, or decimal hours", () => {
    for (const input of ["10h 55m 33s", "10:55:33", "10 55 33", "10h55m33s"]) {
      assert.ok(Math.abs(parseRightAscension(input) - (10 + 55 / 60 + 33 / 3600)) < 1e-9, input);
    }
    assert.equal(parseRightAscension("10.925"), 10.925);
    assert.throws(() => parseRightAscension("24h"), /below 24h/);
    assert.throws(() => parseRightAscension("10 61"), RangeError);
    assert.throws(() => parseRightAscension("-1"), RangeError);
  });

  test("Dec in ° ′ ″ or decimal degrees, any minus sign", () => {
    assert.ok(Math.abs(parseDeclination("+69° 03′ 55″") - (69 + 3 / 60 + 55 / 3600)) < 1e-9);
    assert.ok(Math.abs(parseDeclination("−5 23 28") + (5 + 23 / 60 + 28 / 3600)) < 1e-9);
    assert.equal(parseDeclination("-0.5"), -0.5);
    assert.throws(() => parseDeclination("91"), /±90/);
  });

  test("formatting rounds into the next minute instead of showing 60 seconds", () => {
    assert.equal(formatRightAscension(9.925888888), "09h 55m 33s");
    assert.equal(formatRightAscension(1 + 59 / 60 + 59.9 / 3600), "02h 00m 00s");
    assert.equal(formatDeclination(-5.391), "−05° 23′ 28″");
    assert.equal(formatDeclination(null), "—");
  });
});

describe("state, backoff and frame rate", () => {
  test("a transition the table does not allow throws", () => {
    const machine = new StateMachine({ a: ["b"], b: [] }, "a");
    assert.equal(machine.to("a"), null);
    assert.equal(machine.to("b"), "a");
    assert.throws(() => machine.to("a"), /illegal transition b → a/);
  });

  test("backoff grows to its cap and starts over after a reset", () => {
    const backoff = new Backoff({ initialMs: 100, maximumMs: 1000, random: () => 1 });
    assert.deepEqual([1, 2, 3, 4, 5].map(() => backoff.next()), [100, 200, 400, 800, 1000]);
    backoff.reset();
    assert.equal(backoff.next(), 100);
  });

  test("frame rate is measured from frames shown and falls when they stop", () => {
    const meter = new FrameRateMeter(2000);
    for (let t = 0; t <= 2000; t += 200) meter.tick(t);
    assert.ok(Math.abs(meter.fps(2000) - 5) < 0.01);
    assert.ok(meter.fps(3500) < 2);
    assert.equal(meter.fps(5000), 0);
  });
});
