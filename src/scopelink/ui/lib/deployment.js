/**
 * Which server the page is on, and what that server offers the page: decided once, here, so
 * that no view or service guesses. `scopelink serve` (and a proxy on its LAN) hosts the
 * telescope: REST, server-sent events, MJPEG and WebRTC. A broker (`scopelink broker`) carries
 * signaling only: the page reaches the telescope over WebRTC, and its data channel is the one
 * path for commands and status.
 */

/** @typedef {"serve" | "broker"} DeploymentKind */

/**
 * What a deployment offers the page beside WebRTC and its data channel.
 *
 * @typedef {object} TransportPlan
 * @property {boolean} mjpeg the live view may use MJPEG (chosen, or as WebRTC's fallback)
 * @property {boolean} rest commands go over REST while no data channel is open
 * @property {boolean} sse status comes over server-sent events while no data channel is open
 * @property {boolean} catalogue targets can be searched by name (`/api/catalog`; on a broker
 *   without altitudes, as it does not know where a telescope stands)
 * @property {boolean} stackImages the latest stacked image can be fetched (`stack.jpg`)
 * @property {boolean} wideCamera the S30's wide camera can be shown (MJPEG only)
 */

/** @type {Readonly<Record<DeploymentKind, Readonly<TransportPlan>>>} */
export const TRANSPORT_PLANS = Object.freeze({
  serve: Object.freeze({
    mjpeg: true,
    rest: true,
    sse: true,
    catalogue: true,
    stackImages: true,
    wideCamera: true,
  }),
  broker: Object.freeze({
    mjpeg: false,
    rest: false,
    sse: false,
    catalogue: true,
    stackImages: false,
    wideCamera: false,
  }),
});

/**
 * @param {DeploymentKind} kind
 * @returns {Readonly<TransportPlan>}
 */
export function transportPlan(kind) {
  return TRANSPORT_PLANS[kind];
}
