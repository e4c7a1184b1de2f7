/**
 * The telescopes an account may use through the broker: each with its role and whether it is
 * online (its proxy linked to the broker now), a Connect button for one that is online, and
 * Members… for an owner. The telescope's own panels (status, controls, log) show only while one
 * is connected: nothing stale is left on show once it is gone. Below: an invitation code to accept; above: pairing a new telescope by
 * the code its proxy shows (a dialog, also opened by loading the page with `#pair`, the address
 * the proxy prints).
 */

import { clearError, runCommand } from "./command-feedback.js";
import { byTestId, create, setText } from "./dom.js";

/** @typedef {import('../services/account.js').BrokerAccount} BrokerAccount */
/** @typedef {import('../services/remote-link.js').RemoteLink} RemoteLink */
/** @typedef {import('../types/protocol').RemoteTelescope} RemoteTelescope */
/** @typedef {import('../types/protocol').TelescopeRole} TelescopeRole */

/** @type {Record<TelescopeRole, string>} */
const ROLE_NAMES = { owner: "owner", operator: "operator", viewer: "viewer" };

/**
 * What a role lets you do, in a sentence.
 *
 * @param {TelescopeRole} role
 * @param {string} name
 * @returns {string}
 */
export function roleSentence(role, name) {
  if (role === "owner") return `You own ${name}: you can command it and invite others.`;
  if (role === "operator") return `You are an operator of ${name}: you can command it.`;
  return `You are a viewer of ${name}: you can watch, not command it.`;
}

/**
 * @param {{panel: HTMLElement, pairDialog: HTMLDialogElement, telescopePanels: HTMLElement[]}}
 *   elements `telescopePanels`: shown only while a telescope is connected
 * @param {{account: BrokerAccount, remote: RemoteLink, canConnect: string | null,
 *          role: () => TelescopeRole | null, onManage: (telescope: RemoteTelescope) => void}}
 *   services `canConnect`: why this browser cannot connect at all (no WebRTC), or null; `role`:
 *   the role on the telescope connected now (the data channel's word first)
 */
export function mountBrokerTelescopes(
  { panel, pairDialog, telescopePanels },
  { account, remote, canConnect, role, onManage },
) {
  const list = byTestId(panel, "remote-telescopes", HTMLUListElement);
  const empty = byTestId(panel, "remote-empty", HTMLElement);
  const roleLine = byTestId(panel, "remote-role", HTMLElement);
  const error = byTestId(panel, "remote-error", HTMLElement);
  const notice = byTestId(panel, "broker-notice", HTMLElement);
  const pairOpen = byTestId(panel, "pair-open", HTMLButtonElement);
  const acceptForm = byTestId(panel, "accept-form", HTMLFormElement);
  const acceptCode = byTestId(panel, "accept-code", HTMLInputElement);
  const acceptSubmit = byTestId(panel, "accept-submit", HTMLButtonElement);
  const acceptError = byTestId(panel, "accept-error", HTMLElement);
  const pairForm = byTestId(pairDialog, "pair-form", HTMLFormElement);
  const pairCode = byTestId(pairDialog, "pair-code", HTMLInputElement);
  const pairName = byTestId(pairDialog, "pair-name", HTMLInputElement);
  const pairSubmit = byTestId(pairDialog, "pair-submit", HTMLButtonElement);
  const pairCancel = byTestId(pairDialog, "pair-cancel", HTMLButtonElement);
  const pairError = byTestId(pairDialog, "pair-error", HTMLElement);

  /** @param {string} text */
  function tell(text) {
    setText(notice, text);
    notice.hidden = !text;
  }

  /** @param {RemoteTelescope} t */
  function item(t) {
    const connected = account.selectedId === t.id;
    const li = create("li");
    li.dataset.testid = "remote-telescope";
    li.dataset.id = t.id;
    li.dataset.online = String(t.online);
    li.dataset.connected = String(connected);
    const who = create("div", "who");
    const state = t.online ? "online" : "offline";
    const facts = create("small", "", `${ROLE_NAMES[t.role]} · ${state}`);
    facts.dataset.testid = "remote-telescope-facts";
    const title = create("strong", "", t.name);
    title.dataset.testid = "remote-telescope-name";
    const dot = create("span", "online-dot");
    dot.dataset.online = String(t.online);
    dot.setAttribute("aria-hidden", "true");
    who.append(title, facts);
    li.append(dot, who);
    if (t.role === "owner") {
      const manage = create("button", "small-button", "Members…");
      manage.type = "button";
      manage.dataset.testid = "remote-manage";
      manage.setAttribute("aria-label", `Members of ${t.name}`);
      manage.addEventListener("click", () => onManage(t));
      li.append(manage);
    }
    if (t.online && t.lan_url) {
      // Its own page on its network (mDNS name): signaling without the broker. A link the user
      // follows, with a fresh grant in the fragment (never sent to a server).
      const lanUrl = t.lan_url;
      const direct = create("button", "small-button", "On its network");
      direct.type = "button";
      direct.dataset.testid = "remote-lan";
      direct.title = `Open ${t.name}'s own page at ${lanUrl} (from the same network only)`;
      direct.addEventListener("click", async () => {
        clearError(error);
        try {
          const { grant } = await account.broker.grant(t.id);
          window.location.assign(`${lanUrl}#grant=${encodeURIComponent(grant)}`);
        } catch (e) {
          tell(`Could not open ${t.name} on its network: ${e instanceof Error ? e.message : e}`);
        }
      });
      li.append(direct);
    }
    const connect = connected
      ? create("button", "", "Disconnect")
      : create("button", "primary", "Connect");
    connect.type = "button";
    connect.dataset.testid = connected ? "remote-disconnect" : "remote-connect";
    connect.setAttribute("aria-label", `${connected ? "Disconnect from" : "Connect to"} ${t.name}`);
    const why = connected
      ? null
      : (canConnect ?? (t.online ? null : `${t.name} is offline: its proxy is not connected.`));
    connect.disabled = why !== null;
    connect.title = why ?? "";
    connect.addEventListener("click", () => {
      clearError(error);
      account.select(connected ? null : t.id);
    });
    li.append(connect);
    return li;
  }

  /** What the list was drawn from: redrawn only when it changes (a focused button stays). */
  let drawn = "";

  function render() {
    const now = JSON.stringify([account.telescopes, account.selectedId]);
    if (now !== drawn) {
      drawn = now;
      list.replaceChildren(...account.telescopes.map(item));
    }
    empty.hidden = account.telescopes.length > 0 || account.state !== "signed-in";
    for (const shown of telescopePanels) shown.hidden = !account.selectedId;
    const selected = account.selected;
    const held = selected ? role() : null;
    roleLine.hidden = !selected || !held;
    setText(roleLine, selected && held ? roleSentence(held, selected.name) : "");
  }

  // -- pairing --------------------------------------------------------------------------------

  function openPairing() {
    if (account.state !== "signed-in" || pairDialog.open) return;
    clearError(pairError);
    pairDialog.showModal();
    pairCode.focus();
  }
  function closePairing() {
    pairDialog.close();
    if (location.hash === "#pair") {
      history.replaceState(null, "", location.pathname + location.search);
    }
  }
  pairOpen.addEventListener("click", openPairing);
  pairCancel.addEventListener("click", closePairing);
  pairForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = pairCode.value.trim().toUpperCase();
    const name = pairName.value.trim();
    const paired = await runCommand(pairSubmit, pairError, () => account.claim(code, name));
    if (!paired) return;
    pairForm.reset();
    closePairing();
    const online = account.telescope(paired.id)?.online;
    tell(
      online
        ? `${paired.name} is paired and online.`
        : `${paired.name} is paired. It shows as online once its proxy has linked to the broker.`,
    );
  });
  // The proxy prints the broker's address with `#pair`: the form opens once signed in.
  const wantsPairing = () => location.hash === "#pair" && openPairing();
  window.addEventListener("hashchange", wantsPairing);
  account.addEventListener("statechange", wantsPairing);

  // -- invitations ----------------------------------------------------------------------------

  acceptForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    tell("");
    const code = acceptCode.value.trim();
    const joined = await runCommand(acceptSubmit, acceptError, () => account.accept(code));
    if (!joined) return;
    acceptForm.reset();
    tell(`You joined ${joined.name} as ${ROLE_NAMES[joined.role]}.`);
  });

  account.addEventListener("change", render);
  account.addEventListener("select", render);
  remote.addEventListener("statechange", render);
  account.addEventListener("statechange", () => {
    if (account.state !== "signed-in") tell("");
  });
  render();
  return { render };
}
