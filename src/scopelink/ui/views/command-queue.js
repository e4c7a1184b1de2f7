/**
 * The commands given while scopelink could not be reached (services/commands.js): each with
 * what happens or happened to it, and a Cancel button while it waits.
 */

/** @typedef {import('../services/commands.js').CommandPort} CommandPort */
/** @typedef {import('../services/commands.js').QueuedCommand} QueuedCommand */

/**
 * A command in a few words.
 *
 * @param {import('../types/protocol').Command} command
 */
export function commandLabel(command) {
  const { type, ...params } = command;
  const shown = Object.entries(params)
    .filter(([, v]) => v !== null && v !== undefined)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
  return shown ? `${type.replaceAll("_", " ")} (${shown})` : type.replaceAll("_", " ");
}

/**
 * @param {HTMLElement} root
 * @param {{commands: CommandPort, unreachable?: string}} services `unreachable`: what could not
 *   be reached, in the list's title ("scopelink" unless told: "the telescope" behind a broker)
 */
export function mountCommandQueue(root, { commands, unreachable }) {
  const list = /** @type {HTMLUListElement} */ (
    root.querySelector("[data-testid=command-queue-list]")
  );
  const title = root.querySelector("[data-testid=command-queue-title]");
  if (title && unreachable) {
    title.textContent = `Commands given while ${unreachable} could not be reached:`;
  }

  /** @param {QueuedCommand[]} queue */
  function render(queue) {
    root.hidden = queue.length === 0;
    list.replaceChildren(
      ...queue.map((entry) => {
        const item = document.createElement("li");
        item.dataset.state = entry.state;
        item.dataset.testid = "queued-command";
        item.textContent = `${commandLabel(entry.command)}: ${entry.note} `;
        if (entry.state === "queued") {
          const cancel = document.createElement("button");
          cancel.type = "button";
          cancel.textContent = "Cancel";
          cancel.dataset.testid = "queued-cancel";
          cancel.addEventListener("click", () => commands.cancel(entry.id));
          item.append(cancel);
        }
        return item;
      }),
    );
  }
  commands.addEventListener("queue", (event) => {
    render(/** @type {CustomEvent<QueuedCommand[]>} */ (event).detail);
  });
  render(commands.queue);
}
