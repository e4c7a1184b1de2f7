/**
 * An explicit state machine: the allowed transitions are written once, as a table, and a move
 * the table does not allow throws (it is a bug, not a runtime condition to recover from).
 *
 * @template {string} S
 */
export class StateMachine {
  /** @type {Readonly<Record<S, readonly S[]>>} */
  #transitions;
  /** @type {S} */
  #state;

  /**
   * @param {Readonly<Record<S, readonly S[]>>} transitions each state's possible next states
   * @param {S} initial
   */
  constructor(transitions, initial) {
    this.#transitions = transitions;
    this.#state = initial;
  }

  /** @returns {S} */
  get state() {
    return this.#state;
  }

  /**
   * @param {S} next
   * @returns {boolean} whether the table allows moving from the current state to `next`
   */
  can(next) {
    return this.#transitions[this.#state].includes(next);
  }

  /**
   * Move to `next`; staying in the same state is a no-op.
   *
   * @param {S} next
   * @returns {S | null} the previous state, or null when nothing changed
   */
  to(next) {
    const previous = this.#state;
    if (next === previous) return null;
    if (!this.can(next)) throw new Error(`illegal transition ${previous} → ${next}`);
    this.#state = next;
    return previous;
  }
}
