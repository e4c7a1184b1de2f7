/**
 * The live view over MJPEG (`…/stream.mjpeg`, multipart/x-mixed-replace).
 *
 * The stream is read with `fetch` and parsed here, not handed to an `<img>`: Chromium fires an
 * image's `load` only for the first part of a multipart stream, so an `<img>` gives no per-frame
 * events, no frame rate, no stamps and no way to notice a stream that stopped delivering. Each
 * JPEG is decoded off the main thread (`createImageBitmap`) and drawn to a canvas. When frames
 * arrive faster than they decode, only the newest waits: the picture is never behind the stream.
 *
 * A failed or ended stream is retried with backoff; a stream that stays silent for
 * `restartAfterMs` is dropped and opened again.
 */

import { Backoff } from "../lib/backoff.js";
import { boundaryOf, MultipartParser } from "../lib/multipart.js";
import { LiveTransport } from "./live-transport.js";

/** @typedef {import('./api.js').ApiClient} ApiClient */
/** @typedef {import('../lib/multipart.js').MultipartPart} MultipartPart */
/** @typedef {import('../lib/framestamp.js').FrameStamp} FrameStamp */
/** @typedef {import('./api.js').CameraName} CameraName */

/**
 * The `X-Frame-Stamp: <frame>;<emit_ms>` header the server sends with each part.
 *
 * @param {string | undefined} value
 * @returns {FrameStamp | null}
 */
export function parseStampHeader(value) {
  const match = /^(\d+);(\d+)$/.exec(value?.trim() ?? "");
  return match ? { frame: Number(match[1]), emitMs: Number(match[2]) } : null;
}

/**
 * @typedef {object} MjpegOptions
 * @property {CameraName} [camera] which camera's stream (`main`; `wide` on the S30 models)
 * @property {number | null} [width] JPEG width to ask for (the server's default when null)
 * @property {number | null} [quality] JPEG quality to ask for
 * @property {number} [stallAfterMs] no frame this long: `stalled`
 * @property {number} [restartAfterMs] no frame this long: reconnect
 */

export class MjpegTransport extends LiveTransport {
  #canvas = document.createElement("canvas");
  /** @type {CanvasRenderingContext2D | null} */
  #context = null;
  #hasFrame = false;
  /** @type {string | null} */
  #telescopeId = null;
  /** Whose picture the canvas holds (kept across a stop, so a resumed stream starts from it). */
  #shown = /** @type {string | null} */ (null);
  /** Bumped on every (re)connect and stop, so callbacks of an old stream do nothing. */
  #run = 0;
  /** @type {AbortController | null} */
  #abort = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #retryTimer = null;
  /** @type {ReturnType<typeof setInterval> | null} */
  #watchdog = null;
  #connectedAt = 0;
  /** The newest part not yet decoded; older ones are dropped (latest frame wins). */
  #pending = /** @type {MultipartPart | null} */ (null);
  #decoding = false;
  #backoff = new Backoff({ initialMs: 500, maximumMs: 10_000 });

  /**
   * @param {ApiClient} api
   * @param {MjpegOptions} [options]
   */
  constructor(
    api,
    {
      camera = "main",
      width = null,
      quality = null,
      stallAfterMs = 4_000,
      restartAfterMs = 20_000,
    } = {},
  ) {
    super();
    this.api = api;
    this.camera = camera;
    this.width = width;
    this.quality = quality;
    this.stallAfterMs = stallAfterMs;
    this.restartAfterMs = restartAfterMs;
    this.#canvas.dataset.testid = "live-canvas";
    this.#canvas.setAttribute("role", "img");
  }

  /** @override */
  get name() {
    return "MJPEG";
  }

  /** @override */
  get element() {
    return this.#canvas;
  }

  /** @override */
  get frameSize() {
    return this.#hasFrame
      ? { width: this.#canvas.width, height: this.#canvas.height }
      : { width: 0, height: 0 };
  }

  /**
   * @override
   * @param {string} telescopeId
   */
  start(telescopeId) {
    const other = telescopeId !== this.#shown;
    this.stop();
    if (other) this.#clear(); // another telescope's last picture must not pass for this one's
    this.#telescopeId = telescopeId;
    this.#shown = telescopeId;
    this.#backoff.reset();
    this.#watchdog = setInterval(() => this.#check(), 500);
    void this.#connect();
  }

  /** @override */
  stop() {
    this.#run += 1;
    this.#abort?.abort();
    this.#abort = null;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    if (this.#watchdog) clearInterval(this.#watchdog);
    this.#retryTimer = null;
    this.#watchdog = null;
    this.#pending = null;
    this.#telescopeId = null;
    this.setState("idle");
  }

  async #connect() {
    const id = this.#telescopeId;
    if (!id) return;
    const run = ++this.#run;
    const abort = new AbortController();
    this.#abort = abort;
    this.#connectedAt = performance.now();
    this.setState("connecting");
    const path = `/api/telescopes/${encodeURIComponent(id)}/stream.mjpeg`;
    // `main` is the server's default: its URL stays as it always was.
    const camera = this.camera === "main" ? null : this.camera;
    const url = this.api.url(path, { camera, width: this.width, quality: this.quality });
    try {
      const response = await fetch(url, { signal: abort.signal, cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`);
      const boundary = boundaryOf(response.headers.get("content-type"));
      if (!boundary || !response.body) throw new Error("not a multipart stream");
      const parser = new MultipartParser(boundary);
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (run !== this.#run) return;
        if (done || parser.ended) break;
        for (const part of parser.push(value)) this.#offer(part, run);
      }
      throw new Error("the stream ended");
    } catch (error) {
      if (run !== this.#run) return; // stopped or restarted on purpose
      this.lastError = error instanceof Error ? error.message : String(error);
      this.#retry();
    }
  }

  #retry() {
    this.#run += 1; // whatever the old stream still delivers is ignored
    this.#abort?.abort();
    this.#abort = null;
    this.setState("retrying");
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      void this.#connect();
    }, this.#backoff.next());
  }

  /**
   * @param {MultipartPart} part
   * @param {number} run
   */
  #offer(part, run) {
    this.#pending = part;
    if (!this.#decoding) void this.#decode(run);
  }

  /** @param {number} run */
  async #decode(run) {
    this.#decoding = true;
    try {
      while (this.#pending && run === this.#run) {
        const part = this.#pending;
        this.#pending = null;
        let bitmap;
        try {
          bitmap = await createImageBitmap(new Blob([part.body], { type: "image/jpeg" }));
        } catch {
          continue; // a damaged JPEG: skip it, the next one will do
        }
        if (run !== this.#run) {
          bitmap.close();
          break;
        }
        this.#draw(bitmap);
        bitmap.close();
        this.lastError = null;
        this.#backoff.reset();
        this.frameShown(parseStampHeader(part.headers.get("x-frame-stamp")));
      }
    } finally {
      this.#decoding = false;
    }
  }

  /** @param {ImageBitmap} bitmap */
  #draw(bitmap) {
    const canvas = this.#canvas;
    if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
      canvas.width = bitmap.width;
      canvas.height = bitmap.height;
      this.#context = null;
    }
    this.#context ??= canvas.getContext("2d", { alpha: false });
    this.#context?.drawImage(bitmap, 0, 0);
    this.#hasFrame = true;
  }

  #clear() {
    this.#hasFrame = false;
    const { width, height } = this.#canvas;
    this.#canvas.getContext("2d", { alpha: false })?.clearRect(0, 0, width, height);
  }

  #check() {
    const now = performance.now();
    const last = this.lastFrameAt ?? this.#connectedAt;
    const silent = now - Math.max(last, this.#connectedAt);
    if (this.state === "playing" && silent > this.stallAfterMs) this.setState("stalled");
    if ((this.state === "stalled" || this.state === "connecting") && silent > this.restartAfterMs) {
      this.lastError = `no frame for ${Math.round(silent / 1000)} s`;
      this.#retry();
    }
  }
}
