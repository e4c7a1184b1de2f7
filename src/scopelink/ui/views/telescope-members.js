/**
 * An owner's dialog for one telescope: its members (name, role, since when) with Revoke (after a
 * confirmation: their live view ends at once), an invitation to create (the code shown once,
 * with a Copy button and when it expires), and the latest connections through the broker.
 */

import { localTime, relativeTime } from "../lib/relative-time.js";
import { clearError, runCommand, showError } from "./command-feedback.js";
import { byTestId, create, setText } from "./dom.js";

/** @typedef {import('../services/broker-api.js').BrokerApi} BrokerApi */
/** @typedef {import('../services/account.js').BrokerAccount} BrokerAccount */
/** @typedef {import('../types/protocol').RemoteTelescope} RemoteTelescope */
/** @typedef {import('../types/protocol').TelescopeDetails} TelescopeDetails */
/** @typedef {import('../types/protocol').Member} Member */
/** @typedef {import('../types/protocol').InvitedRole} InvitedRole */

/** Connections listed, newest first. */
const CONNECTIONS_SHOWN = 8;

/**
 * @param {{dialog: HTMLDialogElement, confirm: HTMLDialogElement}} elements `confirm`: the
 *   revocation's confirmation
 * @param {{broker: BrokerApi, account: BrokerAccount}} services
 */
export function mountTelescopeMembers({ dialog, confirm }, { broker, account }) {
  const title = byTestId(dialog, "members-title", HTMLElement);
  const close = byTestId(dialog, "members-close", HTMLButtonElement);
  const members = byTestId(dialog, "members-list", HTMLUListElement);
  const membersError = byTestId(dialog, "members-error", HTMLElement);
  const inviteForm = byTestId(dialog, "invite-form", HTMLFormElement);
  const inviteRole = byTestId(dialog, "invite-role", HTMLSelectElement);
  const inviteCreate = byTestId(dialog, "invite-create", HTMLButtonElement);
  const inviteError = byTestId(dialog, "invite-error", HTMLElement);
  const invitation = byTestId(dialog, "invitation", HTMLElement);
  const code = byTestId(dialog, "invitation-code", HTMLOutputElement);
  const copy = byTestId(dialog, "invitation-copy", HTMLButtonElement);
  const expires = byTestId(dialog, "invitation-expires", HTMLElement);
  const connections = byTestId(dialog, "connections-list", HTMLUListElement);
  const confirmTitle = byTestId(confirm, "revoke-title", HTMLElement);
  /** @type {RemoteTelescope | null} */
  let telescope = null;
  /** The member whose revocation waits for its confirmation. @type {Member | null} */
  let revoking = null;

  /** @param {Member} member */
  function memberItem(member) {
    const li = create("li");
    li.dataset.testid = "member";
    li.dataset.accountId = member.account_id;
    const who = create("div", "who");
    const name = create("strong", "", member.name);
    name.dataset.testid = "member-name";
    const facts = create("small", "", `${member.role} · since ${localTime(member.since)}`);
    facts.dataset.testid = "member-facts";
    who.append(name, facts);
    li.append(who);
    if (member.account_id !== account.account?.id) {
      const revoke = create("button", "danger-outline", "Revoke");
      revoke.type = "button";
      revoke.dataset.testid = "member-revoke";
      revoke.setAttribute("aria-label", `Revoke ${member.name}'s access`);
      revoke.addEventListener("click", () => {
        revoking = member;
        setText(confirmTitle, `Revoke ${member.name}'s access to ${telescope?.name ?? ""}?`);
        confirm.returnValue = "";
        confirm.showModal();
      });
      li.append(revoke);
    }
    return li;
  }

  /** @param {TelescopeDetails} details */
  function render(details) {
    members.replaceChildren(...(details.members ?? []).map(memberItem));
    const recent = [...(details.connections ?? [])]
      .sort((a, b) => b.opened - a.opened)
      .slice(0, CONNECTIONS_SHOWN);
    connections.replaceChildren(
      ...recent.map((c) => {
        const ended = c.ended === null ? "connected now" : `ended (${c.outcome ?? "closed"})`;
        const li = create("li", "", `${c.account} · ${localTime(c.opened)} · ${ended}`);
        li.dataset.testid = "connection";
        return li;
      }),
    );
    if (recent.length === 0) connections.replaceChildren(create("li", "muted", "None yet."));
  }

  async function load() {
    if (!telescope) return;
    const id = telescope.id;
    try {
      const details = await broker.telescope(id);
      if (telescope?.id === id) render(details);
    } catch (error) {
      showError(membersError, error);
    }
  }

  confirm.addEventListener("close", async () => {
    const member = revoking;
    revoking = null;
    if (confirm.returnValue !== "revoke" || !member || !telescope) return;
    const id = telescope.id;
    const done = await runCommand(null, membersError, async () => {
      await broker.revoke(id, member.account_id);
      return true;
    });
    if (done) await load();
  });

  inviteForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!telescope) return;
    const id = telescope.id;
    const role = /** @type {InvitedRole} */ (inviteRole.value);
    const issued = await runCommand(inviteCreate, inviteError, () => broker.invite(id, role));
    if (!issued) return;
    code.value = issued.code;
    const left = relativeTime(issued.expires * 1000 - Date.now());
    setText(
      expires,
      `For one ${issued.role}; works once, until ${localTime(issued.expires)} (${left}).`,
    );
    setText(copy, "Copy");
    invitation.hidden = false;
  });

  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(code.value);
      setText(copy, "Copied");
    } catch {
      // No clipboard here (an insecure origin, a refusal): select it for the user to copy.
      const range = document.createRange();
      range.selectNodeContents(code);
      getSelection()?.removeAllRanges();
      getSelection()?.addRange(range);
      setText(copy, "Selected: copy it");
    }
  });

  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    // The code is shown once: gone with the dialog.
    telescope = null;
    code.value = "";
    invitation.hidden = true;
  });

  return {
    /** @param {RemoteTelescope} shown */
    open(shown) {
      telescope = shown;
      setText(title, `${shown.name}: members`);
      members.replaceChildren();
      connections.replaceChildren();
      for (const slot of [membersError, inviteError]) clearError(slot);
      invitation.hidden = true;
      dialog.showModal();
      void load();
    },
  };
}
