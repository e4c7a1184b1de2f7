/**
 * Capped exponential backoff with jitter, for every reconnect in the UI, so that a restarted
 * server is not hit by every open tab at the same instant.
 */
export class Backoff {
  #attempt = 0;

  /**
   * @param {{initialMs?: number, maximumMs?: number, factor?: number,
   *          random?: () => number}} [options]
   */
  constructor({ initialMs = 500, maximumMs = 15_000, factor = 2, random = Math.random } = {}) {
    this.initialMs = initialMs;
    this.maximumMs = maximumMs;
    this.factor = factor;
    this.random = random;
  }

  /** How many delays were handed out since the last reset. */
  get attempt() {
    return this.#attempt;
  }

  /** @returns {number} the delay before the next attempt, in milliseconds */
  next() {
    const cap = Math.min(this.maximumMs, this.initialMs * this.factor ** this.#attempt);
    this.#attempt += 1;
    return cap * (0.5 + 0.5 * this.random());
  }

  /** Call after a success: the next failure starts from the shortest delay again. */
  reset() {
    this.#attempt = 0;
  }
}
