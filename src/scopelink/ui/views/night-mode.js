/**
 * The night-mode toggle: red light only, remembered in this browser. Red keeps the eyes'
 * dark adaptation at the telescope; the picture is turned red too (styles.css, #night-red).
 */

const STORAGE_KEY = "scopelink.theme";

/**
 * @param {HTMLButtonElement} toggle
 * @param {{storage?: Pick<Storage, "getItem" | "setItem"> | null}} [options]
 */
export function mountNightMode(toggle, { storage = globalThis.localStorage ?? null } = {}) {
  const root = document.documentElement;

  /** @param {boolean} night */
  function apply(night) {
    root.dataset.theme = night ? "night" : "dark";
    toggle.setAttribute("aria-pressed", String(night));
    const themeColor = document.querySelector('meta[name="theme-color"]');
    themeColor?.setAttribute("content", night ? "#000000" : "#07090d");
  }

  apply(storage?.getItem(STORAGE_KEY) === "night");
  toggle.addEventListener("click", () => {
    const night = root.dataset.theme !== "night";
    storage?.setItem(STORAGE_KEY, night ? "night" : "dark");
    apply(night);
  });
}
