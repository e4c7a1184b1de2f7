"""The web UI in broker mode, end to end: Chromium on a real broker, a real proxy paired to it and
the simulator behind the proxy. The broker carries signaling only: the page signs in, pairs the
proxy by the code it shows, connects over WebRTC through the broker's signaling socket, and
commands and watches over the data channel alone; viewers watch, revocation ends a view, and a
telescope whose proxy stops is shown offline.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Request, expect

from scopelink.broker import web as broker_web
from scopelink.grants import GrantVerifier, generate_private_key, public_key_pem
from scopelink.schema.link import LinkOpen
from scopelink.simulator.mount import MotionKind
from tests.conftest import sky_at
from tests.e2e.conftest import DESKTOP, UI, open_ui
from tests.e2e.test_webrtc import playing, stamps_advance
from tests.remote.conftest import PASSWORD
from tests.remote.ui_fixtures import RemoteSite, remote_site

#: What a signed-out page on a broker logs by design: `/api/session` is `serve`'s (404 here, how
#: the page learns it is on a broker) and `/api/me` says 401 until someone signs in.
EXPECTED_NOISE = re.compile(r"Failed to load resource: .* status of (401|404)")
#: Requests a page on a broker must never make: the broker has no REST commands, SSE or MJPEG.
#: What only `serve` answers (a broker's catalogue knows no telescope's site).
SERVE_ONLY = re.compile(r"/api/(catalog\?.*telescope_id|.*(/commands|/events|\.mjpeg|\.jpg))")


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[RemoteSite]:
    async with remote_site(tmp_path) as running:
        yield running


@pytest.fixture
async def paired(site: RemoteSite) -> RemoteSite:
    """Ada's account with the proxy paired to it (over the API) and linked to the broker."""
    owner = await site.sign_up("ada")
    await site.pair_to(owner, "Backyard")
    await site.start_proxy()
    return site


@contextlib.asynccontextmanager
async def broker_page(browser: Browser, site: RemoteSite) -> AsyncIterator[UI]:
    """A fresh browser context (its own cookies: its own account) on the broker's page."""
    async with open_ui(browser, site.broker.running, viewport=DESKTOP) as ui:
        requests: list[str] = []

        def seen(request: Request) -> None:
            requests.append(request.url)

        ui.page.on("request", seen)
        await ui.page.goto(site.url + "/")
        yield ui
        errors = [e for e in ui.errors if not EXPECTED_NOISE.search(e)]
        assert not errors, errors
        wrong = [url for url in requests if SERVE_ONLY.search(url)]
        assert not wrong, f"requests a broker cannot answer: {wrong}"


async def sign_in(ui: UI, name: str, *, create: bool = False) -> None:
    await expect(ui.by("signin")).to_be_visible()
    await ui.by("signin-name").fill(name)
    await ui.by("signin-password").fill(PASSWORD)
    await ui.by("sign-up" if create else "sign-in").click()
    await expect(ui.by("account-name")).to_have_text(name)
    await expect(ui.by("signin")).to_be_hidden()


def telescope(ui: UI, name: str = "Backyard"):  # type: ignore[no-untyped-def]
    return ui.by("remote-telescope").filter(has=ui.page.get_by_text(name, exact=True))


async def connect(ui: UI, name: str = "Backyard") -> None:
    await telescope(ui, name).get_by_test_id("remote-connect").click()
    await expect(ui.by("remote-state")).to_have_attribute("data-state", "connected")
    await playing(ui, "WebRTC")


async def test_an_owner_creates_an_account_pairs_the_proxy_by_its_code_and_sees_it_online(
    browser: Browser, site: RemoteSite
) -> None:
    async with broker_page(browser, site) as ui:
        # The address the proxy prints ends in #pair: signed out, the page asks to sign in first.
        await ui.page.goto(site.url + "/#pair")
        await expect(ui.by("layout")).to_be_hidden()
        await expect(ui.by("connection-pill")).to_have_text("Signed out")
        await sign_in(ui, "ada", create=True)
        await expect(ui.by("pair-dialog")).to_be_visible()

        # A code nobody shows is refused with the broker's reason.
        await ui.by("pair-code").fill("BCDF-GHJK")
        await ui.by("pair-name").fill("Backyard")
        await ui.by("pair-submit").click()
        await expect(ui.by("pair-error")).to_contain_text("no pairing waits for that code")

        pairing = await site.start_pairing()
        await ui.by("pair-code").fill(pairing.code.lower())  # typed as it comes
        await ui.by("pair-submit").click()
        await site.paired(pairing)
        await expect(ui.by("pair-dialog")).to_be_hidden()
        assert not ui.page.url.endswith("#pair")
        backyard = telescope(ui)
        await expect(backyard.get_by_test_id("remote-telescope-facts")).to_have_text(
            "owner · offline"
        )
        await expect(backyard.get_by_test_id("remote-connect")).to_be_disabled()
        await expect(ui.by("broker-notice")).to_contain_text("Backyard is paired")

        await site.start_proxy()  # `scopelink proxy` links to the broker once paired
        await expect(backyard.get_by_test_id("remote-telescope-facts")).to_have_text(
            "owner · online"
        )
        await expect(backyard.get_by_test_id("remote-connect")).to_be_enabled()
        await expect(ui.by("connection-pill")).to_have_text("Not connected")


async def test_the_owner_connects_the_picture_plays_and_gotos_and_a_park_complete(
    browser: Browser, paired: RemoteSite
) -> None:
    mount = paired.simulator.telescope.mount
    async with broker_page(browser, paired) as ui:
        await sign_in(ui, "ada")
        await connect(ui)
        await expect(ui.by("remote-state")).to_have_text(
            "Connected to Backyard · direct (peer to peer)"
        )
        await expect(ui.by("connection-pill")).to_have_text("Live")
        await stamps_advance(ui)
        # WebRTC is the only way here: no MJPEG toggle, no wide camera.
        await expect(ui.by("live-transport-toggle")).to_be_hidden()
        await expect(ui.by("status-link")).to_have_text("Connected")
        await expect(ui.by("remote-role")).to_contain_text("You own Backyard")

        await ui.by("goto-tab-coords").click()
        ra, dec = sky_at(paired.simulator, alt_deg=40.0, az_deg=180.0)
        await ui.by("goto-ra").fill(f"{ra:.4f}")
        await ui.by("goto-dec").fill(f"{dec:.3f}")
        await ui.by("goto-go").click()
        await expect(ui.by("operation-kind")).to_have_text("Go to · done", timeout=30_000)
        await expect(ui.by("status-tracking")).to_have_text("On")

        # By name: the broker finds it (without an altitude: it does not know where Backyard
        # stands), the proxy looks the name up and the mount goes there.
        await ui.by("goto-tab-name").click()
        await ui.by("goto-search").fill("M 81")
        result = ui.page.locator('[data-testid=goto-result][data-name="M 81"]')
        await expect(result).to_be_visible()
        await expect(result.get_by_test_id("goto-result-alt")).to_have_text("")
        await result.click()
        await ui.by("goto-go").click()
        # The target changes when this goto starts; then it ends.
        await expect(ui.by("status-target")).to_have_text("M 81", timeout=30_000)
        await expect(ui.by("operation-kind")).to_have_text("Go to · done", timeout=30_000)
        await expect(ui.by("status-motion")).to_have_text("Idle")
        assert not mount.parked and mount.tracking

        await ui.by("park").click()
        await ui.by("park-confirm").click()
        await expect(ui.by("operation-kind")).to_have_text("Park · done", timeout=30_000)
        await expect(ui.by("status-motion")).to_have_text("Parked")
        assert mount.parked and mount.motion is MotionKind.NONE
        assert await ui.page.evaluate("window.scopelink.telemetry.transport.via") == "channel"


async def test_an_invited_viewer_sees_the_picture_but_not_the_controls_and_is_told_why(
    browser: Browser, paired: RemoteSite
) -> None:
    async with broker_page(browser, paired) as ada, broker_page(browser, paired) as bob:
        await sign_in(ada, "ada")
        await telescope(ada).get_by_test_id("remote-manage").click()
        await expect(ada.by("members-dialog")).to_be_visible()
        await expect(ada.by("member")).to_have_count(1)  # the owner
        await ada.by("invite-role").select_option("viewer")
        await ada.by("invite-create").click()
        await expect(ada.by("invitation")).to_be_visible()
        await expect(ada.by("invitation-expires")).to_contain_text("works once")
        await expect(ada.by("invitation-expires")).to_contain_text("in 7 days")
        code = await ada.by("invitation-code").text_content()
        assert code

        await sign_in(bob, "bob", create=True)
        await expect(bob.by("remote-empty")).to_be_visible()
        await bob.by("accept-code").fill(code)
        await bob.by("accept-submit").click()
        await expect(bob.by("broker-notice")).to_have_text("You joined Backyard as viewer.")
        facts = telescope(bob).get_by_test_id("remote-telescope-facts")
        await expect(facts).to_have_text("viewer · online")
        await expect(telescope(bob).get_by_test_id("remote-manage")).to_have_count(0)

        await connect(bob)
        await stamps_advance(bob)
        reason = "You are a viewer of Backyard: you can watch, not command it."
        await expect(bob.by("remote-role")).to_have_text(reason)
        motion = bob.by("motion-panel").locator("fieldset.commands")
        await expect(motion).to_have_attribute("disabled", "")
        await expect(motion).to_have_attribute("title", reason)
        await expect(bob.by("move-up")).to_be_disabled()
        await expect(bob.by("goto-go")).to_be_disabled()
        # Were the page to send one anyway, the proxy refuses it and the page has the reason.
        refusal = await bob.page.evaluate(
            """(id) => window.scopelink.commands.send(id, {type: "park"})
                 .then(() => null, (e) => e.message)""",
            paired.telescope_id,
        )
        assert refusal and "viewers may watch" in refusal, refusal

        # The owner sees the new member.
        await ada.by("members-close").click()
        await telescope(ada).get_by_test_id("remote-manage").click()
        await expect(ada.by("member")).to_have_count(2)
        await expect(ada.by("member").filter(has_text="bob")).to_contain_text("viewer")


async def test_revoking_a_viewer_ends_their_live_view_with_a_clear_message(
    browser: Browser, paired: RemoteSite
) -> None:
    owner = paired.people[0]
    r = await owner.http.post(
        f"/api/telescopes/{paired.telescope_id}/invitations", json={"role": "viewer"}
    )
    bob = await paired.sign_up("bob")
    r = await bob.http.post("/api/invitations/accept", json={"code": r.json()["code"]})
    assert r.status_code == 200, r.text

    async with broker_page(browser, paired) as ada, broker_page(browser, paired) as viewer:
        await sign_in(viewer, "bob")
        await connect(viewer)

        await sign_in(ada, "ada")
        await telescope(ada).get_by_test_id("remote-manage").click()
        bob_row = ada.by("member").filter(has_text="bob")
        await bob_row.get_by_test_id("member-revoke").click()
        await expect(ada.by("revoke-title")).to_have_text("Revoke bob's access to Backyard?")
        await ada.by("revoke-confirm").click()
        await expect(ada.by("member")).to_have_count(1)

        ended = re.compile(r"^Your access to Backyard has ended: ")
        await expect(viewer.by("remote-state")).to_have_attribute("data-state", "refused")
        await expect(viewer.by("remote-state")).to_have_text(ended)
        await expect(viewer.by("connection-banner")).to_have_text(ended)
        await expect(viewer.by("live-placeholder")).to_have_text(ended)
        await expect(viewer.by("live-state")).to_have_attribute("data-state", "idle")
        # Nothing of the telescope is left on show: no stale status, no controls.
        await expect(viewer.by("status-panel")).to_be_hidden()
        await expect(viewer.by("motion-panel")).to_be_hidden()
        await expect(viewer.by("remote-telescope")).to_have_count(0)
        await expect(viewer.by("remote-empty")).to_be_visible()
        assert await viewer.page.evaluate("window.scopelink.transport.frameSize.width") == 0


async def test_a_telescope_whose_proxy_stops_is_shown_offline_and_comes_back(
    browser: Browser, paired: RemoteSite
) -> None:
    async with broker_page(browser, paired) as ui:
        await sign_in(ui, "ada")
        await connect(ui)

        await paired.stop_proxy()
        offline = "Backyard is offline: its proxy is not connected to the broker. Trying again…"
        await expect(ui.by("remote-state")).to_have_text(offline, timeout=15_000)
        await expect(ui.by("connection-pill")).to_have_text("Telescope offline")
        await expect(ui.by("connection-banner")).to_have_text(offline)
        facts = telescope(ui).get_by_test_id("remote-telescope-facts")
        await expect(facts).to_have_text("owner · offline", timeout=15_000)

        await paired.start_proxy()
        await expect(ui.by("remote-state")).to_have_attribute(
            "data-state", "connected", timeout=20_000
        )
        await expect(ui.by("connection-banner")).to_be_hidden()
        await playing(ui, "WebRTC")
        await stamps_advance(ui)


async def test_a_proxy_that_does_not_answer_is_said_so_and_the_page_connects_once_it_does(
    browser: Browser, paired: RemoteSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broker_web, "ANSWER_TIMEOUT_S", 1.0)
    link = paired.link
    assert link is not None
    answer = link._open

    async def hung(message: LinkOpen) -> None:
        """A proxy linked to the broker but too busy to take the conversation."""

    monkeypatch.setattr(link, "_open", hung)
    async with broker_page(browser, paired) as ui:
        await sign_in(ui, "ada")
        await telescope(ui).get_by_test_id("remote-connect").click()
        said = "Backyard's proxy did not answer in time. Trying again…"
        await expect(ui.by("remote-state")).to_have_text(said)
        await expect(ui.by("connection-pill")).to_have_text("No answer")
        await expect(ui.by("connection-banner")).to_have_text(said)

        monkeypatch.setattr(link, "_open", answer)
        await expect(ui.by("remote-state")).to_have_attribute(
            "data-state", "connected", timeout=20_000
        )
        await expect(ui.by("connection-banner")).to_be_hidden()
        await playing(ui, "WebRTC")


async def test_a_grant_the_proxy_refuses_stops_the_page_and_says_why(
    browser: Browser, paired: RemoteSite
) -> None:
    link = paired.link
    assert link is not None
    # The proxy trusts another broker's key (paired elsewhere since): it refuses this one's grants.
    stranger = public_key_pem(generate_private_key())
    link.verifier = GrantVerifier(stranger, paired.telescope_id)
    async with broker_page(browser, paired) as ui:
        await sign_in(ui, "ada")
        await telescope(ui).get_by_test_id("remote-connect").click()
        refused = re.compile(r"^Backyard refused the broker's grant: .+\.$")
        await expect(ui.by("remote-state")).to_have_text(refused)
        await expect(ui.by("remote-state")).to_have_attribute("data-state", "refused")
        await expect(ui.by("live-placeholder")).to_have_text(refused)
        # Nothing a retry can mend: the page stopped, and Connect is offered again.
        await expect(telescope(ui).get_by_test_id("remote-connect")).to_be_enabled()
        assert await ui.page.evaluate("window.scopelink.transport.state") == "idle"


async def test_a_link_with_a_grant_opens_the_proxys_own_page_signed_in_once(
    browser: Browser, paired: RemoteSite
) -> None:
    """The direct path on the telescope's network: the broker's grant in the link's fragment
    becomes a session on the proxy's own page (which otherwise needs a token), the fragment
    leaves the address bar, and the same link does not work twice."""
    assert paired.proxy is not None
    owner = paired.people[0]
    r = await owner.http.post(f"/api/telescopes/{paired.telescope_id}/grant")
    grant = r.json()["grant"]
    async with open_ui(browser, paired.proxy, viewport=DESKTOP) as stranger:
        await stranger.page.goto(f"{paired.proxy.base_url}/")
        await expect(stranger.by("connection-banner")).to_contain_text("needs an access token")
    async with open_ui(browser, paired.proxy, viewport=DESKTOP) as ui:
        await ui.page.goto(f"{paired.proxy.base_url}/#grant={grant}")
        await playing(ui, "WebRTC")
        assert "#grant" not in ui.page.url
        await expect(ui.by("connection-pill")).to_have_text("Live")
        await ui.by("park").click()
        await expect(ui.page.get_by_role("dialog")).to_be_visible()
    async with open_ui(browser, paired.proxy, viewport=DESKTOP) as again:
        await again.page.goto(f"{paired.proxy.base_url}/#grant={grant}")
        await expect(again.by("connection-banner")).to_contain_text("replayed")
