/**
 * The page on `scopelink serve` (or a proxy, on its LAN): the server hosts its telescopes, so
 * the page lists them (and adds or removes one), shows an S30's wide camera, and learns its role
 * from `/api/session`. app.js wires the rest, which both servers share.
 */

import { Backoff } from "./lib/backoff.js";
import { WIDE_INSET_WIDTH } from "./lib/wide-camera.js";
import { MjpegTransport } from "./services/mjpeg.js";
import { TelescopeList } from "./services/telescopes.js";
import { mountConnectionBanner } from "./views/connection-banner.js";
import { byTestId } from "./views/dom.js";
import { mountTelescopeSelector } from "./views/telescope-selector.js";
import { mountWideInset } from "./views/wide-inset.js";

/** @typedef {import('./services/api.js').ApiClient} ApiClient */
/** @typedef {import('./services/api.js').AccessInfo} AccessInfo */
/** @typedef {import('./lib/deployment.js').TransportPlan} TransportPlan */

/**
 * What app.js hands this mode once the shared views are mounted.
 *
 * @typedef {object} SharedParts
 * @property {import('./services/telemetry.js').TelemetryService} telemetry
 * @property {{render(): void}} gate the command gate
 */

export class ServeMode {
  /**
   * @param {{api: ApiClient, session: AccessInfo, plan: TransportPlan}} options
   */
  constructor({ api, session, plan }) {
    this.api = api;
    this.role = session.role;
    this.plan = plan;
    /** The telescopes the server knows; the selection is the one shown. */
    this.telescopes = new TelescopeList(api);
    this.selection = this.telescopes;
    // The S30's wide camera: MJPEG only (WebRTC carries the main camera), small, in the inset.
    this.wide = new MjpegTransport(api, { camera: "wide", width: WIDE_INSET_WIDTH });
    this.hooks = { telescopes: this.telescopes, wide: this.wide };
    /** The command gate, once mounted. @type {{render(): void} | null} */
    this.gate = null;
  }

  /** Why this page may only watch (a viewer token), or null. */
  watchOnly() {
    if (this.role === "operator") return null;
    return "This session may watch but not command the telescope.";
  }

  noTelescopeText() {
    return "No telescope selected.";
  }

  /**
   * @param {HTMLElement} page
   * @param {SharedParts} shared
   */
  mount(page, { telemetry, gate }) {
    const { api, telescopes } = this;
    mountConnectionBanner(
      {
        banner: byTestId(page, "connection-banner", HTMLElement),
        pill: byTestId(page, "connection-pill", HTMLElement),
      },
      { telemetry, api, telescopes },
    );
    mountTelescopeSelector(
      {
        select: byTestId(page, "telescope-select", HTMLSelectElement),
        manage: byTestId(page, "telescopes-manage", HTMLButtonElement),
        dialog: byTestId(page, "telescopes-dialog", HTMLDialogElement),
      },
      { telescopes },
    );
    if (this.plan.wideCamera) {
      const wideInset = mountWideInset(byTestId(page, "live-view", HTMLElement), {
        transport: this.wide,
        telemetry,
        telescopes,
      });
      telescopes.addEventListener("select", () => wideInset.show(telescopes.selectedId));
    }
    telemetry.addEventListener("statechange", () => {
      if (telemetry.state === "live" && telescopes.state === "error") {
        void telescopes.refresh().catch(() => undefined);
      }
      // Offline for a while: perhaps the telescope was removed, or the server restarted without
      // it. A fresh list moves the selection on if it is gone.
      if (telemetry.state === "offline") void telescopes.refresh().catch(() => undefined);
    });
    this.gate = gate;
  }

  /** Load the telescopes; retried until the backend answers. */
  start() {
    const startup = new Backoff({ initialMs: 1_000, maximumMs: 10_000 });
    const load = async () => {
      try {
        await this.telescopes.refresh();
        this.gate?.render();
      } catch {
        setTimeout(load, startup.next());
      }
    };
    void load();
  }
}
