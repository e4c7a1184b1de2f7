/**
 * The few DOM operations every view needs: find an element by its `data-testid` with the type
 * the view expects (a typo or a changed page fails loudly at start-up, not later), and update
 * text only when it changed (telemetry arrives several times a second).
 */

/**
 * @template {Element} T
 * @param {ParentNode} root
 * @param {string} testId
 * @param {new (...args: any[]) => T} type
 * @returns {T}
 */
export function byTestId(root, testId, type) {
  const element = root.querySelector(`[data-testid="${testId}"]`);
  if (!(element instanceof type)) {
    throw new Error(`the page has no ${type.name} with data-testid="${testId}"`);
  }
  return element;
}

/**
 * @param {ParentNode} root
 * @param {string} selector
 * @returns {HTMLButtonElement[]}
 */
export function buttons(root, selector) {
  return [...root.querySelectorAll(selector)].filter((b) => b instanceof HTMLButtonElement);
}

/**
 * @param {Element} element
 * @param {string} text
 */
export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/**
 * Set `data-<name>` only when it changed (a changed attribute restyles the element).
 *
 * @param {HTMLElement} element
 * @param {string} name
 * @param {string | null} value null removes it
 */
export function setData(element, name, value) {
  if (value === null) delete element.dataset[name];
  else if (element.dataset[name] !== value) element.dataset[name] = value;
}

/**
 * Create an element with a class and text.
 *
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function create(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}
