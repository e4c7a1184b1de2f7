/**
 * Press-and-hold moves for the direction pad. While a direction is held, a short `move` is sent
 * again and again; on release, `stop`. Each move lasts only `durationS`, so if the page, the
 * network or the stop is lost, the mount stops by itself within that time: a held button can
 * never leave the telescope running.
 *
 * States: `idle` → `moving` (a direction is held) → `stopping` (sending stop) → `idle`.
 * Events: `statechange`, `error` (detail: the ApiError of a failed move or stop).
 */

import { StateMachine } from "../lib/state-machine.js";

/** @typedef {import('./commands.js').CommandPort} CommandPort */
/** @typedef {import('../types/protocol').Direction} Direction */
/** @typedef {"idle" | "moving" | "stopping"} JogState */

/** @type {Readonly<Record<JogState, readonly JogState[]>>} */
export const JOG_TRANSITIONS = {
  idle: ["moving"],
  moving: ["stopping", "idle"],
  stopping: ["idle", "moving"],
};

export class JogController extends EventTarget {
  #machine = new StateMachine(JOG_TRANSITIONS, /** @type {JogState} */ ("idle"));
  /** @type {ReturnType<typeof setInterval> | null} */
  #repeat = null;
  /** The move request in flight: stop waits for it, so it cannot overtake the move. */
  #inflight = /** @type {Promise<unknown>} */ (Promise.resolve());
  /** @type {Direction | null} */
  direction = null;
  speed = 720;

  /**
   * @param {CommandPort} commands
   * @param {() => string | null} telescopeId which telescope to move
   * @param {{repeatMs?: number, durationS?: number}} [options]
   */
  constructor(commands, telescopeId, { repeatMs = 500, durationS = 1 } = {}) {
    super();
    this.commands = commands;
    this.telescopeId = telescopeId;
    this.repeatMs = repeatMs;
    this.durationS = durationS;
  }

  /** @returns {JogState} */
  get state() {
    return this.#machine.state;
  }

  /**
   * Start (or change) a held move.
   *
   * @param {Direction} direction
   * @param {number} speed firmware units: 1 is 10″/s, 1440 is 4°/s
   */
  press(direction, speed) {
    if (this.state === "moving" && direction === this.direction && speed === this.speed) return;
    this.direction = direction;
    this.speed = speed;
    this.#setState("moving");
    this.#stopRepeat();
    this.#sendMove();
    this.#repeat = setInterval(() => this.#sendMove(), this.repeatMs);
  }

  /** The direction was let go: stop now. */
  async release() {
    if (this.state !== "moving") return;
    this.#stopRepeat();
    this.#setState("stopping");
    const id = this.telescopeId();
    try {
      await this.#inflight;
      if (id) await this.commands.send(id, { type: "stop" });
    } catch (error) {
      this.dispatchEvent(new CustomEvent("error", { detail: error }));
    } finally {
      // A new press while the stop was on its way has started moving again: leave it be.
      if (!this.#pressedAgain()) {
        this.direction = null;
        this.#setState("idle");
      }
    }
  }

  #sendMove() {
    const id = this.telescopeId();
    const direction = this.direction;
    if (!id || !direction || this.state !== "moving") return;
    const sent = this.commands.send(id, {
      type: "move",
      direction,
      speed: this.speed,
      duration_s: this.durationS,
    });
    this.#inflight = sent.catch(() => undefined);
    sent.catch((error) => {
      // Refused (busy, disconnected): holding on would only repeat the refusal.
      if (this.state === "moving" && this.direction === direction) {
        this.#stopRepeat();
        this.direction = null;
        this.#setState("idle");
      }
      this.dispatchEvent(new CustomEvent("error", { detail: error }));
    });
  }

  /** Whether a press came while stopping (a method, so the compiler does not assume the state). */
  #pressedAgain() {
    return this.state === "moving";
  }

  #stopRepeat() {
    if (this.#repeat) clearInterval(this.#repeat);
    this.#repeat = null;
  }

  /** @param {JogState} next */
  #setState(next) {
    const previous = this.#machine.to(next);
    if (previous !== null) {
      this.dispatchEvent(new CustomEvent("statechange", { detail: { from: previous, to: next } }));
    }
  }
}
