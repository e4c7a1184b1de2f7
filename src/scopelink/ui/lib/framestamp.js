/**
 * Reads the frame stamp the simulator draws into every frame (docs/frame-stamp.md): frame number
 * and emit time, read back from the picture a viewer actually shows, so end-to-end latency and
 * dropped frames can be measured whatever scaling and lossy coding happened on the way.
 *
 * A port of `read()` in src/scopelink/framestamp.py; the two must agree bit for bit.
 */

export const SYNC = 0xb1;
export const CELLS_PER_ROW = 48;
export const ROWS = 2;
export const BITS = CELLS_PER_ROW * ROWS;
/** The cell size is the picture width divided by this. */
export const UNITS = 50;

/**
 * @typedef {object} FrameStamp
 * @property {number} frame frame number (per simulator, from 0, wraps at 2³²)
 * @property {number} emitMs when the simulator sent the frame, ms since the Unix epoch
 */

/**
 * CRC-8, polynomial 0x07, initial value 0.
 *
 * @param {ArrayLike<number>} bytes
 * @returns {number}
 */
export function crc8(bytes) {
  let crc = 0;
  for (let i = 0; i < bytes.length; i++) {
    crc ^= bytes[i];
    for (let bit = 0; bit < 8; bit++) {
      crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
    }
  }
  return crc;
}

/**
 * Read a stamp from RGBA pixels (an `ImageData`, or the top band of one: only the first
 * `4 · width / 50` rows are looked at).
 *
 * @param {{data: ArrayLike<number>, width: number, height: number}} image
 * @returns {FrameStamp | null} null when there is no stamp, or its sync byte or CRC is wrong
 */
export function readFrameStamp({ data, width, height }) {
  const u = width / UNITS;
  if (u < 2 || height < 4 * u) return null;
  const half = Math.max(1, Math.trunc(u / 4));
  const bytes = new Uint8Array(BITS / 8);
  for (let i = 0; i < BITS; i++) {
    const row = Math.trunc(i / CELLS_PER_ROW);
    const col = i % CELLS_PER_ROW;
    const cx = Math.trunc((col + 1.5) * u);
    const cy = Math.trunc((row + 1.5) * u);
    // The mean of the grey values (mean of R, G, B) over a small window at the cell centre.
    let sum = 0;
    let count = 0;
    for (let y = cy - half; y <= Math.min(cy + half, height - 1); y++) {
      for (let x = cx - half; x <= Math.min(cx + half, width - 1); x++) {
        const p = (y * width + x) * 4;
        sum += (data[p] + data[p + 1] + data[p + 2]) / 3;
        count += 1;
      }
    }
    if (sum / count > 255 / 2) bytes[i >> 3] |= 0x80 >> (i & 7);
  }
  if (bytes[0] !== SYNC || crc8(bytes.subarray(0, bytes.length - 1)) !== bytes[bytes.length - 1]) {
    return null;
  }
  const frame = ((bytes[1] << 24) >>> 0) + (bytes[2] << 16) + (bytes[3] << 8) + bytes[4];
  let emitMs = 0;
  for (let k = 5; k < 11; k++) emitMs = emitMs * 256 + bytes[k];
  return { frame, emitMs };
}

/** @type {OffscreenCanvas | HTMLCanvasElement | null} */
let scratch = null;

/**
 * Draw what a picture source shows now (an `<img>`, `<canvas>`, `<video>`, `ImageBitmap`) and read
 * its stamp. Only the top band holding the stamp is drawn, so this is cheap enough per frame.
 *
 * @param {CanvasImageSource} source
 * @param {number} width the source's own width in pixels (e.g. `videoWidth`)
 * @param {number} height the source's own height
 * @returns {FrameStamp | null}
 */
export function readFrameStampFrom(source, width, height) {
  if (!width || !height) return null;
  const band = Math.min(height, Math.ceil((4 * width) / UNITS) + 2);
  scratch ??=
    typeof OffscreenCanvas === "function"
      ? new OffscreenCanvas(width, band)
      : document.createElement("canvas");
  if (scratch.width !== width) scratch.width = width;
  if (scratch.height !== band) scratch.height = band;
  const ctx = /** @type {CanvasRenderingContext2D | OffscreenCanvasRenderingContext2D | null} */ (
    scratch.getContext("2d", { willReadFrequently: true })
  );
  if (!ctx) return null;
  ctx.drawImage(source, 0, 0, width, band, 0, 0, width, band);
  return readFrameStamp(ctx.getImageData(0, 0, width, band));
}
