/**
 * The telescope selector: a drop-down of the telescopes scopelink knows, and a dialog to add one
 * by host name or address, or remove one (after a second tap to confirm).
 */

import { clearError, runCommand, showError } from "./command-feedback.js";
import { byTestId, create } from "./dom.js";

/** @typedef {import('../services/telescopes.js').TelescopeList} TelescopeList */

/** How long a "Remove" button waits for its confirming second tap. */
const CONFIRM_MS = 4_000;

/**
 * @param {{select: HTMLSelectElement, manage: HTMLButtonElement,
 *          dialog: HTMLDialogElement}} elements
 * @param {{telescopes: TelescopeList}} services
 */
export function mountTelescopeSelector({ select, manage, dialog }, { telescopes }) {
  const list = byTestId(dialog, "telescope-list", HTMLUListElement);
  const error = byTestId(dialog, "telescopes-error", HTMLElement);
  const form = byTestId(dialog, "telescope-add-form", HTMLFormElement);
  const host = byTestId(dialog, "telescope-host", HTMLInputElement);
  const name = byTestId(dialog, "telescope-name", HTMLInputElement);
  const add = byTestId(dialog, "telescope-add", HTMLButtonElement);
  const close = byTestId(dialog, "telescopes-close", HTMLButtonElement);

  function renderSelect() {
    const options = telescopes.telescopes.map((t) => {
      const label = t.simulated && !/simulat/i.test(t.name) ? `${t.name} (simulated)` : t.name;
      const option = create("option", "", label);
      option.value = t.id;
      return option;
    });
    if (options.length === 0) {
      const text = telescopes.state === "loading" ? "Loading…" : "No telescope";
      const none = create("option", "", text);
      none.value = "";
      options.push(none);
    }
    select.replaceChildren(...options);
    select.value = telescopes.selectedId ?? "";
  }

  function renderList() {
    list.replaceChildren(
      ...telescopes.telescopes.map((t) => {
        const item = create("li");
        item.dataset.testid = "telescope-item";
        const who = create("div", "who");
        who.append(create("strong", "", t.name), create("small", "", `${t.host} · ${t.control}`));
        const remove = create("button", "danger-outline", "Remove");
        remove.type = "button";
        remove.setAttribute("aria-label", `Remove ${t.name}`);
        remove.dataset.testid = "telescope-remove";
        /** @type {ReturnType<typeof setTimeout> | null} */
        let armed = null;
        remove.addEventListener("click", async () => {
          if (!armed) {
            // The first tap only arms it: removing disconnects the telescope for everyone.
            remove.textContent = "Really remove?";
            armed = setTimeout(() => {
              armed = null;
              remove.textContent = "Remove";
            }, CONFIRM_MS);
            return;
          }
          clearTimeout(armed);
          armed = null;
          await runCommand(remove, error, () => telescopes.remove(t.id));
        });
        item.append(who, remove);
        return item;
      }),
    );
  }

  select.addEventListener("change", () => telescopes.select(select.value || null));
  manage.addEventListener("click", () => {
    clearError(error);
    renderList();
    dialog.showModal();
    void telescopes.refresh().catch((e) => showError(error, e));
  });
  close.addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const added = await runCommand(add, error, () =>
      telescopes.add({ host: host.value.trim(), name: name.value.trim() || null }),
    );
    if (added) {
      form.reset();
      dialog.close();
    }
  });
  telescopes.addEventListener("change", () => {
    renderSelect();
    renderList();
  });
  telescopes.addEventListener("select", renderSelect);
  renderSelect();
}
