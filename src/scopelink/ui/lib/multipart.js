/**
 * An incremental parser for `multipart/x-mixed-replace` (the MJPEG wire format): feed it the
 * bytes of a streamed response as they come, get back each part once it is complete. Pure
 * protocol code: it knows nothing of images or of the app.
 *
 * It uses a part's Content-Length when there is one (no scan through the JPEG for the next
 * boundary) and falls back to finding the delimiter; after garbage it resynchronises on the next
 * delimiter instead of giving up.
 */

const CRLF = new Uint8Array([13, 10]);
const encoder = new TextEncoder();
const decoder = new TextDecoder("latin1");

/**
 * @typedef {object} MultipartPart
 * @property {Map<string, string>} headers header names in lower case
 * @property {Uint8Array<ArrayBuffer>} body
 */

/**
 * The boundary named in a Content-Type header, e.g. `multipart/x-mixed-replace; boundary=frame`.
 *
 * @param {string | null} contentType
 * @returns {string | null}
 */
export function boundaryOf(contentType) {
  const match = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType ?? "");
  return match ? (match[1] ?? match[2]) : null;
}

/**
 * @param {Uint8Array} haystack
 * @param {Uint8Array} needle
 * @param {number} from
 * @param {number} end
 * @returns {number} the index of `needle` in `haystack[from:end]`, or -1
 */
function indexOf(haystack, needle, from, end) {
  const first = needle[0];
  const last = end - needle.length;
  let i = haystack.indexOf(first, from);
  while (i !== -1 && i <= last) {
    let k = 1;
    while (k < needle.length && haystack[i + k] === needle[k]) k++;
    if (k === needle.length) return i;
    i = haystack.indexOf(first, i + 1);
  }
  return -1;
}

export class MultipartParser {
  /** @type {Uint8Array<ArrayBuffer>} */
  #buf = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  /** @type {"preamble" | "after-boundary" | "headers" | "body" | "delimiter" | "end"} */
  #phase = "preamble";
  /** @type {Map<string, string>} */
  #headers = new Map();
  /** Where to resume searching, so a long body is not scanned again with every chunk. */
  #scanFrom = 0;

  /** @param {string} boundary the boundary parameter, without the leading dashes */
  constructor(boundary) {
    this.dashBoundary = encoder.encode(`--${boundary}`);
    this.delimiter = encoder.encode(`\r\n--${boundary}`);
  }

  /** Whether the closing delimiter (`--boundary--`) was seen. */
  get ended() {
    return this.#phase === "end";
  }

  /**
   * @param {Uint8Array} chunk the next bytes of the stream
   * @returns {MultipartPart[]} the parts these bytes completed, oldest first
   */
  push(chunk) {
    this.#append(chunk);
    /** @type {MultipartPart[]} */
    const parts = [];
    for (;;) {
      const part = this.#step();
      if (part === false) break;
      if (part) parts.push(part);
    }
    return parts;
  }

  /** @returns {MultipartPart | null | false} a part, null (progress) or false (needs more bytes) */
  #step() {
    const buf = this.#buf;
    const available = this.#end - this.#start;
    switch (this.#phase) {
      case "preamble": {
        // The first boundary may come without the CRLF before it; later ones after garbage with it.
        const from = Math.max(this.#start, this.#scanFrom);
        const at = indexOf(buf, this.dashBoundary, from, this.#end);
        if (at === -1) {
          this.#scanFrom = Math.max(this.#start, this.#end - this.dashBoundary.length);
          return false;
        }
        this.#start = at + this.dashBoundary.length;
        this.#scanFrom = 0;
        this.#phase = "after-boundary";
        return null;
      }
      case "after-boundary": {
        if (available < 2) return false;
        const a = buf[this.#start];
        const b = buf[this.#start + 1];
        if (a === 45 && b === 45) {
          this.#phase = "end";
          return false;
        }
        // Transport padding (spaces, tabs) may follow a boundary before its CRLF.
        const eol = indexOf(buf, CRLF, this.#start, this.#end);
        if (eol === -1) return false;
        this.#start = eol + 2;
        this.#headers = new Map();
        this.#phase = "headers";
        return null;
      }
      case "headers": {
        const eol = indexOf(buf, CRLF, this.#start, this.#end);
        if (eol === -1) return false;
        const line = decoder.decode(buf.subarray(this.#start, eol));
        this.#start = eol + 2;
        if (line === "") {
          this.#phase = "body";
          return null;
        }
        const colon = line.indexOf(":");
        if (colon > 0) {
          const name = line.slice(0, colon).trim().toLowerCase();
          this.#headers.set(name, line.slice(colon + 1).trim());
        }
        return null;
      }
      case "body": {
        const length = Number.parseInt(this.#headers.get("content-length") ?? "", 10);
        let bodyEnd;
        if (Number.isFinite(length) && length >= 0) {
          if (available < length) return false;
          bodyEnd = this.#start + length;
          this.#phase = "delimiter";
        } else {
          bodyEnd = indexOf(buf, this.delimiter, Math.max(this.#start, this.#scanFrom), this.#end);
          if (bodyEnd === -1) {
            this.#scanFrom = Math.max(this.#start, this.#end - this.delimiter.length);
            return false;
          }
          this.#scanFrom = 0;
          this.#phase = "delimiter";
        }
        // A copy: the buffer is reused for the bytes that follow.
        const part = { headers: this.#headers, body: buf.slice(this.#start, bodyEnd) };
        this.#start = bodyEnd;
        return part;
      }
      case "delimiter": {
        if (available < this.delimiter.length) return false;
        const end = this.#start + this.delimiter.length;
        const found = indexOf(buf, this.delimiter, this.#start, end);
        if (found === this.#start) {
          this.#start += this.delimiter.length;
          this.#phase = "after-boundary";
        } else {
          this.#phase = "preamble"; // a wrong Content-Length: find the next boundary
        }
        return null;
      }
      case "end":
        this.#start = this.#end; // an epilogue, if any, means nothing
        return false;
    }
  }

  /** @param {Uint8Array} chunk */
  #append(chunk) {
    if (this.#end + chunk.length > this.#buf.length) {
      // Move the unread bytes to the front, into a bigger buffer when they would not fit.
      const used = this.#end - this.#start;
      const fits = used + chunk.length <= this.#buf.length;
      const target = fits ? this.#buf : new Uint8Array((used + chunk.length) * 2);
      target.set(this.#buf.subarray(this.#start, this.#end), 0); // set() copes with overlap
      this.#buf = target;
      this.#scanFrom = Math.max(0, this.#scanFrom - this.#start);
      this.#end = used;
      this.#start = 0;
    }
    this.#buf.set(chunk, this.#end);
    this.#end += chunk.length;
  }
}
