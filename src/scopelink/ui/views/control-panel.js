/**
 * Who controls the telescope (the control lease, docs/protocol.md): one client at a time, the
 * others watch. The page shows the holder, takes control when it is free, asks the holder for
 * it, releases it, and, while holding it, hands it over or keeps it when someone asks.
 *
 * The lease comes over the telescope's data channel (`lease` messages). Without an open channel
 * the page says it cannot tell, and the buttons are hidden: REST callers take part in the lease
 * (a command takes a free one) but are not told of its changes.
 */

import { LeaseTracker, describeHolder, leaseState } from "../services/lease.js";

/** @typedef {import('../services/channel-link.js').ChannelLink} ChannelLink */
/** @typedef {import('../services/datachannel.js').ChannelClient} ChannelClient */
/** @typedef {import('../types/protocol').Lease} Lease */

/** The buttons each lease state offers. */
const ACTIONS = {
  unknown: [],
  free: ["take"],
  yours: ["release"],
  asked: ["grant", "deny"],
  asking: [],
  other: ["ask"],
};

/**
 * The words and the actions for a lease as this page sees it.
 *
 * @param {Lease | null} lease
 * @returns {{text: string, state: import('../services/lease.js').LeaseState, actions: string[]}}
 */
export function describeLease(lease) {
  const state = leaseState(lease);
  const holder = describeHolder(lease?.holder);
  const text = {
    unknown: "Control: unknown (no data channel)",
    free: "Nobody controls the telescope.",
    yours: "You control the telescope.",
    asked: `You control the telescope. ${describeHolder(lease?.requested_by)} asks for control.`,
    asking: `${holder} controls the telescope; you asked for control.`,
    other: `${holder} controls the telescope; you watch.`,
  }[state];
  return { text, state, actions: ACTIONS[state] };
}

/**
 * @param {HTMLElement} root
 * @param {{link: ChannelLink, telescopeId: () => string | null}} services
 */
export function mountControlPanel(root, { link, telescopeId }) {
  const holder = /** @type {HTMLElement} */ (root.querySelector("[data-testid=control-holder]"));
  const note = /** @type {HTMLElement} */ (root.querySelector("[data-testid=control-note]"));
  const tracker = new LeaseTracker();
  /** @type {Record<string, HTMLButtonElement>} */
  const buttons = {};
  for (const action of ["take", "ask", "release", "grant", "deny"]) {
    buttons[action] = /** @type {HTMLButtonElement} */ (
      root.querySelector(`[data-testid=control-${action}]`)
    );
  }
  /** @type {ChannelClient | null} */
  let client = null;

  function render() {
    const open = client?.state === "open";
    const lease = open && client ? client.lease : null;
    tracker.update(lease);
    const { text, state, actions } = describeLease(lease);
    holder.textContent = text;
    root.dataset.state = state;
    note.textContent = tracker.note ?? "";
    note.hidden = !tracker.note;
    for (const [action, button] of Object.entries(buttons)) button.hidden = !actions.includes(action);
  }

  /** @type {Record<string, "take" | "request" | "release" | "grant" | "deny">} */
  const sent = { take: "take", ask: "request", release: "release", grant: "grant", deny: "deny" };
  for (const [action, button] of Object.entries(buttons)) {
    button.addEventListener("click", () => {
      tracker.acted(sent[action]);
      client?.leaseAction(sent[action]);
    });
  }

  function follow() {
    const id = telescopeId();
    const next = id ? link.client(id) : null;
    if (next === client) return;
    client?.removeEventListener("lease", render);
    client?.removeEventListener("statechange", render);
    client = next;
    client?.addEventListener("lease", render);
    client?.addEventListener("statechange", render);
    render();
  }
  follow();
  return { follow };
}
