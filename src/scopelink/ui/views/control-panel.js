/**
 * Who controls the telescope (the control lease, docs/protocol.md): one client at a time, the
 * others watch. The page shows the holder, takes control when it is free, asks the holder for
 * it, releases it, and, while holding it, hands it over or keeps it when someone asks.
 *
 * The lease comes over the telescope's data channel (`lease` messages). Without an open channel
 * the page says it cannot tell, and the buttons are hidden: REST callers take part in the lease
 * (a command takes a free one) but are not told of its changes.
 */

/** @typedef {import('../services/channel-link.js').ChannelLink} ChannelLink */
/** @typedef {import('../services/datachannel.js').ChannelClient} ChannelClient */
/** @typedef {import('../types/protocol').Lease} Lease */
/** @typedef {import('../types/protocol').Holder} Holder */

/** @param {Holder | null} who */
function describe(who) {
  if (!who) return "nobody";
  return who.name || (who.transport === "rest" ? "a script or page over REST" : "another page");
}

/**
 * The words and the actions for a lease as this page sees it.
 *
 * @param {Lease | null} lease
 * @returns {{text: string, state: string, actions: string[]}}
 */
export function describeLease(lease) {
  if (!lease) return { text: "Control: unknown (no data channel)", state: "unknown", actions: [] };
  if (lease.yours && lease.requested_by) {
    return {
      text: `You control the telescope. ${describe(lease.requested_by)} asks for control.`,
      state: "asked",
      actions: ["grant", "deny"],
    };
  }
  if (lease.yours) return { text: "You control the telescope.", state: "yours", actions: ["release"] };
  if (!lease.holder) {
    return { text: "Nobody controls the telescope.", state: "free", actions: ["take"] };
  }
  if (lease.requested_by_you) {
    return {
      text: `${describe(lease.holder)} controls the telescope; you asked for control.`,
      state: "asking",
      actions: [],
    };
  }
  return {
    text: `${describe(lease.holder)} controls the telescope; you watch.`,
    state: "other",
    actions: ["ask"],
  };
}

/**
 * @param {HTMLElement} root
 * @param {{link: ChannelLink, telescopeId: () => string | null}} services
 */
export function mountControlPanel(root, { link, telescopeId }) {
  const holder = /** @type {HTMLElement} */ (root.querySelector("[data-testid=control-holder]"));
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
    const { text, state, actions } = describeLease(open && client ? client.lease : null);
    holder.textContent = text;
    root.dataset.state = state;
    for (const [action, button] of Object.entries(buttons)) button.hidden = !actions.includes(action);
  }

  /** @type {Record<string, "take" | "request" | "release" | "grant" | "deny">} */
  const sent = { take: "take", ask: "request", release: "release", grant: "grant", deny: "deny" };
  for (const [action, button] of Object.entries(buttons)) {
    button.addEventListener("click", () => client?.leaseAction(sent[action]));
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
