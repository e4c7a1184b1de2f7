/**
 * Honest connection state behind a broker: the line in the telescopes panel says where the
 * path to the telescope stands (the broker reached, the telescope answering, connected directly
 * or through a relay), or why not (offline, no answer, interrupted, refused); the header pill
 * says it in a word; the banner says plainly what is wrong, and clears by itself on recovery.
 */

import { setData, setText } from "./dom.js";

/** @typedef {import('../services/remote-link.js').RemoteLink} RemoteLink */
/** @typedef {import('../services/remote-link.js').RemoteState} RemoteState */
/** @typedef {import('../services/account.js').BrokerAccount} BrokerAccount */
/** @typedef {import('../services/api.js').ApiClient} ApiClient */
/** @typedef {import('../services/webrtc.js').WebRtcTransport} WebRtcTransport */
/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */

/**
 * @typedef {object} RemoteWords
 * @property {string} line the full sentence
 * @property {string} pill a word or two for the header
 * @property {"idle" | "connecting" | "live" | "reconnecting" | "offline"} tone the pill's look
 * @property {boolean} problem whether the banner should say it
 */

/**
 * What to say about the path to the telescope now.
 *
 * @param {RemoteLink} remote
 * @param {string} name the telescope's name
 * @param {import('../lib/live-quality.js').MediaPath | null} path
 * @returns {RemoteWords}
 */
export function describeRemote(remote, name, path) {
  const why = remote.reason ? ` (${remote.reason})` : "";
  switch (remote.state) {
    case "idle":
      return {
        line: "Choose a telescope to connect.",
        pill: "Not connected",
        tone: "idle",
        problem: false,
      };
    case "reaching":
      return {
        line: "Reaching the broker…",
        pill: "Connecting…",
        tone: "connecting",
        problem: false,
      };
    case "waiting":
      return {
        line: `Broker reached · waiting for ${name} to answer…`,
        pill: "Connecting…",
        tone: "connecting",
        problem: false,
      };
    case "negotiating":
      return {
        line: `${name} answered · connecting…`,
        pill: "Connecting…",
        tone: "connecting",
        problem: false,
      };
    case "connected": {
      const how =
        path === "relay"
          ? " · through a relay (TURN)"
          : path === "direct"
            ? " · direct (peer to peer)"
            : "";
      return { line: `Connected to ${name}${how}`, pill: "Live", tone: "live", problem: false };
    }
    case "offline":
      return {
        line: `${name} is offline: its proxy is not connected to the broker. Trying again…`,
        pill: "Telescope offline",
        tone: "offline",
        problem: true,
      };
    case "no-answer":
      return {
        line: `${name}'s proxy did not answer in time. Trying again…`,
        pill: "No answer",
        tone: "reconnecting",
        problem: true,
      };
    case "interrupted":
      return {
        line: `The connection to ${name} was interrupted${why}. Reconnecting…`,
        pill: "Reconnecting…",
        tone: "reconnecting",
        problem: true,
      };
    case "refused":
      return {
        line: refusedLine(remote, name),
        pill: "Not connected",
        tone: "offline",
        problem: true,
      };
  }
}

/**
 * @param {RemoteLink} remote
 * @param {string} name
 * @returns {string}
 */
function refusedLine(remote, name) {
  const detail = remote.reason ?? "refused";
  switch (remote.refusal?.kind) {
    case "signed-out":
      return "You are signed out: sign in again to connect.";
    case "grant-refused":
      return `${name} refused the broker's grant: ${detail}.`;
    default:
      return remote.wasConnected
        ? `Your access to ${name} has ended: ${detail}.`
        : `You may not connect to ${name}: ${detail}.`;
  }
}

/**
 * @param {{line: HTMLElement, pill: HTMLElement, banner: HTMLElement}} elements
 * @param {{remote: RemoteLink, account: BrokerAccount, api: ApiClient, video: WebRtcTransport,
 *          name: () => string}} services `name`: the telescope followed (or last followed)
 */
export function mountRemoteStatus({ line, pill, banner }, { remote, account, api, video, name }) {
  function render() {
    const words = describeRemote(remote, name(), video.path);
    setData(line, "state", remote.state);
    setData(line, "path", remote.state === "connected" ? (video.path ?? "unknown") : null);
    setText(line, words.line);
    const signedOut = account.state === "signed-out";
    setData(pill, "state", signedOut ? "idle" : words.tone);
    setText(pill, signedOut ? "Signed out" : words.pill);
    const unreachable = api.reachability === "unreachable";
    const text = unreachable
      ? "The broker is unreachable. Retrying…"
      : words.problem && !signedOut
        ? words.line
        : null;
    banner.hidden = text === null;
    setData(banner, "kind", unreachable ? "backend" : text ? "telescope" : null);
    setText(banner, text ?? "");
  }
  remote.addEventListener("statechange", render);
  account.addEventListener("statechange", render);
  api.addEventListener("reachability", render);
  setInterval(render, 1_000); // the path (direct or relay) is learnt from the stats each second
  render();
  return { render };
}
