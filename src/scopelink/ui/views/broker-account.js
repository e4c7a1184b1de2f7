/**
 * Signing in to the broker: signed out, the page is a sign-in form (or create an account, where
 * the broker takes new ones); signed in, the header names the account beside a Sign out button
 * and the page shows the telescopes and the live view.
 */

import { clearError, runCommand } from "./command-feedback.js";
import { byTestId, setText } from "./dom.js";

/** @typedef {import('../services/account.js').BrokerAccount} BrokerAccount */
/** @typedef {import('../types/protocol').BrokerAbout} BrokerAbout */

/**
 * @param {{signin: HTMLElement, header: HTMLElement, signedIn: HTMLElement[],
 *          errorSlot: HTMLElement}} elements `signedIn`: what is shown only while signed in;
 *   `errorSlot`: where a failed sign-out is told
 * @param {{account: BrokerAccount, about: BrokerAbout}} services
 */
export function mountBrokerAccount({ signin, header, signedIn, errorSlot }, { account, about }) {
  const form = byTestId(signin, "signin-form", HTMLFormElement);
  const name = byTestId(signin, "signin-name", HTMLInputElement);
  const password = byTestId(signin, "signin-password", HTMLInputElement);
  const signUp = byTestId(signin, "sign-up", HTMLButtonElement);
  const note = byTestId(signin, "signup-note", HTMLElement);
  const error = byTestId(signin, "signin-error", HTMLElement);
  const accountName = byTestId(header, "account-name", HTMLElement);
  const signOut = byTestId(header, "sign-out", HTMLButtonElement);

  signUp.hidden = !about.open_signup;
  note.hidden = about.open_signup;

  function render() {
    const state = account.state;
    signin.hidden = state !== "signed-out";
    header.hidden = state !== "signed-in";
    for (const element of signedIn) element.hidden = state !== "signed-in";
    setText(accountName, account.account?.name ?? "");
    if (state === "signed-out" && !signin.contains(document.activeElement)) name.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submitter = /** @type {SubmitEvent} */ (event).submitter;
    const button = submitter instanceof HTMLButtonElement ? submitter : null;
    const credentials = { name: name.value.trim(), password: password.value };
    const creating = button?.value === "sign-up";
    const done = await runCommand(button, error, async () => {
      if (creating) await account.signUp(credentials);
      else await account.signIn(credentials);
      return true;
    });
    if (done) {
      form.reset();
      clearError(error);
    }
  });
  signOut.addEventListener("click", () => {
    void runCommand(signOut, errorSlot, () => account.signOut());
  });
  account.addEventListener("statechange", render);
  account.addEventListener("change", render);
  render();
}
