/**
 * Frame rate measured from the frames actually shown: the count over a sliding window, so the
 * figure falls to zero by itself when frames stop, instead of showing the last good rate.
 */
export class FrameRateMeter {
  /** @type {number[]} */
  #times = [];

  /** @param {number} [windowMs] how far back frames count */
  constructor(windowMs = 2_000) {
    this.windowMs = windowMs;
  }

  /** @param {number} now a frame was shown at this time (ms, `performance.now()`) */
  tick(now) {
    this.#times.push(now);
    this.#trim(now);
  }

  /**
   * @param {number} now
   * @returns {number} frames per second over the window ending `now`; 0 until there is enough
   */
  fps(now) {
    this.#trim(now);
    const times = this.#times;
    // Too little history is no measurement: the first frames of a stream come in a burst.
    if (times.length < 3 || now - times[0] < this.windowMs / 2) return 0;
    const span = Math.max(now - times[0], times[times.length - 1] - times[0]);
    return span > 0 ? ((times.length - 1) * 1000) / span : 0;
  }

  /** The time the last frame was shown, or null. */
  get last() {
    return this.#times.length ? this.#times[this.#times.length - 1] : null;
  }

  reset() {
    this.#times = [];
  }

  /** @param {number} now */
  #trim(now) {
    while (this.#times.length && now - this.#times[0] > this.windowMs) this.#times.shift();
  }
}
