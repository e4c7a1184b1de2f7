/**
 * Sky coordinates as people type and read them: RA in hours (h m s or decimal), Dec in
 * degrees (° ′ ″ or decimal). Parsing is forgiving about separators; formatting has a fixed
 * width, so numbers do not jump around as they change.
 */

/** Minus signs people paste: ASCII, Unicode minus, en dash. */
const MINUS = /^[-\u2212\u2013]/;

/**
 * Split "10h 55m 33.5s", "10:55:33.5", "10 55 33.5" or "10.925" into its numbers.
 *
 * @param {string} text
 * @returns {{negative: boolean, parts: number[]} | null}
 */
function sexagesimalParts(text) {
  let s = text.trim().replace(/,/g, ".");
  const negative = MINUS.test(s);
  s = s.replace(MINUS, "").replace(/^\+/, "").trim();
  if (!s) return null;
  const pieces = s
    .split(/[\s:hHmMsSdD°º'′"″]+/)
    .filter((p) => p !== "");
  if (pieces.length === 0 || pieces.length > 3) return null;
  const parts = pieces.map(Number);
  if (parts.some((n) => !Number.isFinite(n) || n < 0)) return null;
  // Only the last component may have a fraction; minutes and seconds must be below 60.
  for (let i = 0; i < parts.length - 1; i++) if (!Number.isInteger(parts[i])) return null;
  if (parts.slice(1).some((n) => n >= 60)) return null;
  return { negative, parts };
}

/**
 * @param {number[]} parts
 * @returns {number}
 */
function combine(parts) {
  return parts.reduce((sum, n, i) => sum + n / 60 ** i, 0);
}

/**
 * Right ascension from text, in hours.
 *
 * @param {string} text e.g. "10h 55m 33s", "10:55:33", "10.9258"
 * @returns {number} hours in [0, 24)
 * @throws {RangeError} with a message fit to show the user
 */
export function parseRightAscension(text) {
  const parsed = sexagesimalParts(text);
  if (!parsed || parsed.negative) throw new RangeError("RA: use hours like 10h 55m 33s or 10.926");
  const hours = combine(parsed.parts);
  if (hours >= 24) throw new RangeError("RA must be below 24h");
  return hours;
}

/**
 * Declination from text, in degrees.
 *
 * @param {string} text e.g. "+69° 03′ 55″", "-5 23 28", "69.065"
 * @returns {number} degrees in [-90, 90]
 * @throws {RangeError} with a message fit to show the user
 */
export function parseDeclination(text) {
  const parsed = sexagesimalParts(text);
  if (!parsed) throw new RangeError("Dec: use degrees like +69° 03′ 55″ or -5.39");
  const degrees = combine(parsed.parts) * (parsed.negative ? -1 : 1);
  if (Math.abs(degrees) > 90) throw new RangeError("Dec must be within ±90°");
  return degrees;
}

/**
 * Split a value into whole units, minutes and (rounded) seconds, carrying 60s upwards.
 *
 * @param {number} value non-negative
 * @returns {[number, number, number]}
 */
function toSexagesimal(value) {
  let totalSeconds = Math.round(value * 3600);
  const s = totalSeconds % 60;
  totalSeconds = (totalSeconds - s) / 60;
  const m = totalSeconds % 60;
  return [(totalSeconds - m) / 60, m, s];
}

/** @param {number} n */
const two = (n) => String(n).padStart(2, "0");

/**
 * @param {number | null | undefined} hours
 * @returns {string} e.g. "10h 55m 33s", or "—" when unknown
 */
export function formatRightAscension(hours) {
  if (hours == null || !Number.isFinite(hours)) return "—";
  const [h, m, s] = toSexagesimal(((hours % 24) + 24) % 24);
  return `${two(h % 24)}h ${two(m)}m ${two(s)}s`;
}

/**
 * @param {number | null | undefined} degrees
 * @returns {string} e.g. "+69° 03′ 55″", or "—" when unknown
 */
export function formatDeclination(degrees) {
  if (degrees == null || !Number.isFinite(degrees)) return "—";
  const [d, m, s] = toSexagesimal(Math.abs(degrees));
  return `${degrees < 0 ? "−" : "+"}${two(d)}° ${two(m)}′ ${two(s)}″`;
}

/**
 * @param {number | null | undefined} degrees
 * @param {number} [digits]
 * @returns {string} e.g. "+34.2°", or "—" when unknown
 */
export function formatDegrees(degrees, digits = 1) {
  if (degrees == null || !Number.isFinite(degrees)) return "—";
  const text = Math.abs(degrees).toFixed(digits);
  return `${degrees < 0 && Number(text) !== 0 ? "−" : ""}${text}°`;
}
