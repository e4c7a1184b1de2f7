/**
 * "Go to": pick a target by name (search as you type, with its altitude at the telescope's site
 * now) or type coordinates, then Go. A goto that fails later, on the way, is reported here too.
 */

import {
  formatDeclination,
  formatRightAscension,
  parseDeclination,
  parseRightAscension,
} from "../lib/coordinates.js";
import { clearError, runCommand, showError } from "./command-feedback.js";
import { byTestId, create, setText } from "./dom.js";

/** @typedef {import('../services/commands.js').CommandPort} CommandPort */
/** @typedef {import('../services/api.js').CatalogueEntry} CatalogueEntry */
/** @typedef {import('../services/catalogue-search.js').CatalogueSearch} CatalogueSearch */
/** @typedef {import('../services/telemetry.js').TelemetryService} TelemetryService */
/** @typedef {import('../types/protocol').Operation} Operation */
/** @typedef {import('../types/protocol').ViewMode} ViewMode */

/** @type {Record<string, string>} */
const KIND_NAMES = {
  galaxy: "galaxy",
  nebula: "nebula",
  planetary_nebula: "planetary nebula",
  open_cluster: "open cluster",
  globular_cluster: "globular cluster",
  star: "star",
  double_star: "double star",
  supernova_remnant: "supernova remnant",
  planet: "planet",
  moon: "Moon",
  sun: "Sun",
  other: "object",
};

/**
 * The camera mode that suits a kind of target.
 *
 * @param {string} kind
 * @returns {ViewMode}
 */
export function viewModeFor(kind) {
  if (kind === "moon") return "moon";
  if (kind === "sun") return "sun";
  if (kind === "planet") return "planet";
  return "star";
}

/**
 * @param {CatalogueEntry} entry
 * @returns {string}
 */
function altitudeText(entry) {
  if (entry.alt_deg == null) return "";
  const alt = Math.round(entry.alt_deg);
  return entry.alt_deg > 0 ? `↑ ${alt}°` : "below horizon";
}

/**
 * @param {HTMLElement} root the goto panel
 * @param {{commands: CommandPort, search: CatalogueSearch | null, telemetry: TelemetryService,
 *          telescopeId: () => string | null}} services `search`: null where the server has no
 *   catalogue to search: then only coordinates are offered
 */
export function mountGotoPanel(root, { commands, search, telemetry, telescopeId }) {
  const input = byTestId(root, "goto-search", HTMLInputElement);
  const list = byTestId(root, "goto-results", HTMLUListElement);
  const selected = byTestId(root, "goto-selected", HTMLElement);
  const tabName = byTestId(root, "goto-tab-name", HTMLButtonElement);
  const tabCoords = byTestId(root, "goto-tab-coords", HTMLButtonElement);
  const byName = byTestId(root, "goto-by-name", HTMLElement);
  const byCoords = byTestId(root, "goto-by-coords", HTMLElement);
  const ra = byTestId(root, "goto-ra", HTMLInputElement);
  const dec = byTestId(root, "goto-dec", HTMLInputElement);
  const preview = byTestId(root, "goto-coords-preview", HTMLElement);
  const go = byTestId(root, "goto-go", HTMLButtonElement);
  const stop = byTestId(root, "goto-stop", HTMLButtonElement);
  const error = byTestId(root, "goto-error", HTMLElement);

  /** @type {CatalogueEntry | null} */
  let choice = null;
  let active = -1;
  /** @type {"name" | "coords"} */
  let mode = "name";
  /** The operation this panel started, to report its failure here. */
  let startedOp = /** @type {string | null} */ (null);

  // -- tabs ---------------------------------------------------------------------------------

  /** @param {"name" | "coords"} next */
  function showTab(next) {
    mode = next;
    for (const [tab, panel, name] of /** @type {const} */ ([
      [tabName, byName, "name"],
      [tabCoords, byCoords, "coords"],
    ])) {
      const on = name === next;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      panel.hidden = !on;
    }
    updateGo();
  }
  tabName.addEventListener("click", () => showTab("name"));
  tabCoords.addEventListener("click", () => showTab("coords"));
  for (const tab of [tabName, tabCoords]) {
    tab.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      const next = mode === "name" ? tabCoords : tabName;
      showTab(mode === "name" ? "coords" : "name");
      next.focus();
    });
  }

  // -- search -------------------------------------------------------------------------------

  function renderResults() {
    if (!search) return;
    list.replaceChildren();
    active = -1;
    const open = search.state === "done" || search.state === "error";
    if (search.state === "error") {
      list.append(create("li", "empty", `Search failed: ${search.error?.message ?? "error"}`));
    } else if (search.state === "done" && search.results.length === 0) {
      list.append(create("li", "empty", `Nothing called “${search.query}”.`));
    }
    search.results.forEach((entry, index) => {
      const item = create("li");
      item.id = `goto-result-${index}`;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", "false");
      item.dataset.testid = "goto-result";
      item.dataset.name = entry.name;
      const meta = [KIND_NAMES[entry.kind] ?? entry.kind];
      if (entry.magnitude != null) meta.push(`mag ${entry.magnitude.toFixed(1)}`);
      if (entry.constellation) meta.push(entry.constellation);
      const alt = create("span", entry.alt_deg != null && entry.alt_deg <= 0 ? "alt below" : "alt");
      alt.textContent = altitudeText(entry);
      alt.dataset.testid = "goto-result-alt";
      item.append(
        create("span", "name", entry.name),
        alt,
        create("span", "common", entry.common_name ?? ""),
        create("span", "meta", meta.join(" · ")),
      );
      item.addEventListener("pointerdown", (event) => event.preventDefault()); // keep focus
      item.addEventListener("click", () => pick(entry));
      list.append(item);
    });
    const show = open && list.childElementCount > 0 && document.activeElement === input;
    list.hidden = !show;
    input.setAttribute("aria-expanded", String(show));
    input.removeAttribute("aria-activedescendant");
  }

  /** @param {number} index */
  function highlight(index) {
    const items = [...list.querySelectorAll('[role="option"]')];
    if (items.length === 0) return;
    active = (index + items.length) % items.length;
    items.forEach((item, i) => item.setAttribute("aria-selected", String(i === active)));
    input.setAttribute("aria-activedescendant", items[active].id);
    items[active].scrollIntoView({ block: "nearest" });
  }

  /** @param {CatalogueEntry} entry */
  function pick(entry) {
    choice = entry;
    input.value = entry.name;
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
    selected.replaceChildren();
    const name = create("strong", "", entry.name);
    name.dataset.testid = "goto-choice-name";
    selected.append(name);
    if (entry.common_name) selected.append(` — ${entry.common_name}`);
    if (entry.alt_deg != null) {
      const up = entry.alt_deg > 0;
      const where = create("span", up ? "" : "warn");
      where.textContent = up
        ? ` · altitude ${Math.round(entry.alt_deg)}°`
        : " · below the horizon now";
      selected.append(where);
    }
    updateGo();
  }

  input.addEventListener("input", () => {
    if (choice && input.value.trim() !== choice.name) {
      choice = null;
      setText(selected, "Type a name and pick a target.");
    }
    search?.search(input.value, telescopeId());
    updateGo();
  });
  input.addEventListener("focus", () => {
    if (search?.results.length && !choice) renderResults();
  });
  input.addEventListener("blur", () => {
    list.hidden = true;
    input.setAttribute("aria-expanded", "false");
  });
  input.addEventListener("keydown", (event) => {
    if (!search) return;
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (list.hidden && search.results.length) renderResults();
      highlight(active + (event.key === "ArrowDown" ? 1 : -1));
    } else if (event.key === "Enter") {
      event.preventDefault();
      const only = search.results.length === 1 ? search.results[0] : null;
      const entry = search.results[active] ?? only;
      if (entry && !list.hidden) pick(entry);
      else if (choice) void goto();
    } else if (event.key === "Escape") {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
    }
  });
  search?.addEventListener("results", renderResults);
  if (!search) {
    // No catalogue to search: coordinates only.
    tabName.hidden = true;
    showTab("coords");
  }

  // -- coordinates --------------------------------------------------------------------------

  /** @returns {{ra: number, dec: number} | string} the coordinates, or why they are wrong */
  function coordinates() {
    if (!ra.value.trim() || !dec.value.trim()) {
      return "RA in hours (h m s or decimal), Dec in degrees.";
    }
    try {
      return { ra: parseRightAscension(ra.value), dec: parseDeclination(dec.value) };
    } catch (problem) {
      return problem instanceof Error ? problem.message : String(problem);
    }
  }

  function renderPreview() {
    const parsed = coordinates();
    setText(
      preview,
      typeof parsed === "string"
        ? parsed
        : `RA ${formatRightAscension(parsed.ra)} · Dec ${formatDeclination(parsed.dec)}`,
    );
    updateGo();
  }
  ra.addEventListener("input", renderPreview);
  dec.addEventListener("input", renderPreview);

  // -- go and stop --------------------------------------------------------------------------

  function updateGo() {
    go.disabled = mode === "name" ? choice === null : typeof coordinates() === "string";
  }

  async function goto() {
    const id = telescopeId();
    if (!id) return;
    /** @type {import('../types/protocol').Goto} */
    let command;
    if (mode === "name") {
      if (!choice) return;
      command = { type: "goto", target: choice.name, mode: viewModeFor(choice.kind) };
    } else {
      const parsed = coordinates();
      if (typeof parsed === "string") return;
      command = { type: "goto", ra_hours: parsed.ra, dec_deg: parsed.dec };
    }
    const ack = await runCommand(go, error, () => commands.send(id, command));
    // A refused goto leaves the one already running (and its reporting) as it was.
    if (ack) startedOp = ack.operation?.id ?? null;
    updateGo();
  }
  go.addEventListener("click", () => void goto());
  stop.addEventListener("click", async () => {
    const id = telescopeId();
    if (id) await runCommand(stop, error, () => commands.send(id, { type: "stop" }));
  });

  telemetry.addEventListener("operation", (event) => {
    const op = /** @type {CustomEvent<Operation>} */ (event).detail;
    if (op.id !== startedOp) return;
    if (op.state === "fail") showError(error, new Error(op.error ?? (op.message || "it failed")));
    if (op.state === "complete") clearError(error);
  });

  return {
    /** A different telescope: its site changes the altitudes, and old errors are not its own. */
    reset() {
      search?.clear();
      choice = null;
      input.value = "";
      startedOp = null;
      setText(selected, "Type a name and pick a target.");
      clearError(error);
      updateGo();
    },
  };
}
