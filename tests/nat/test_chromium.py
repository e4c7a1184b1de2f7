"""The remote path across home NATs with a real browser: Debian's Chromium inside the browser's
home (`browser_host`) on the broker's own page, used as a person would: create an account, pair
the proxy by the code it printed, wait until the telescope is online, Connect. `scopelink broker`
and coturn run in `public`, `scopelink simulate` and `scopelink proxy` behind the other home
router (tests/nat/browser.py). In each topology: the picture plays (its frame stamps advance), a
command given on the page completes and the telescope's own telemetry reports it, the status
line names the path, and the public network's counters show where the media went.

Chromium runs with tests/e2e's flags, so its host candidates are mDNS names, as in any browser
that has not been given camera access: what a proxy on the Internet gets from a real user."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from playwright.async_api import expect

from tests.e2e.test_webrtc import stamps_advance
from tests.nat.browser import (
    STATUS_DIRECT,
    STATUS_RELAYED,
    BrokerPage,
    broker_page,
    chromium,
    remote_stack,
    signed_in_and_paired,
)
from tests.nat.conftest import MakeTopology
from tests.nat.topology import NatTopology, Traffic

#: Bytes of video over the watched window past which "the media went this way" is plain (the
#: window carries several hundred kB of video).
MEDIA = 100_000
#: What may take another way meanwhile: a few STUN consent checks and TURN refreshes.
STRAY = 3_000
#: What the broker may carry meanwhile: no media; the page's `/api/me` (every 10 s) and the
#: proxy's heartbeat (every 15 s), a few TLS records, may fall in the window.
BROKER_AT_MOST = 6_000
#: What a signed-in page on a broker logs by design (as tests/e2e/test_broker_ui.py).
EXPECTED_NOISE = re.compile(r"Failed to load resource: .* status of (401|404)")


@contextlib.asynccontextmanager
async def signed_in(net: NatTopology, tmp: Path) -> AsyncIterator[BrokerPage]:
    """The stack running in `net`, Chromium in the browser's home on the broker's page with an
    account and the proxy paired by its code (online). On a failure, the processes' output and
    the network's counters are in the message (and in `tmp/<process>.log`)."""
    async with remote_stack(net, tmp) as stack, chromium(net, tmp, stack.spki) as browser:
        async with broker_page(browser) as ui:
            try:
                await signed_in_and_paired(ui, stack)
                yield ui
            except Exception as exc:
                for name, out in stack.outputs.items():
                    (tmp / f"{name}.log").write_text("".join(out.lines))
                raise AssertionError(f"{exc}\n{stack.logs()}\n{net.describe()}") from exc
            errors = [e for e in ui.errors if not EXPECTED_NOISE.search(e)]
            assert not errors, errors


async def connect(ui: BrokerPage, status: str) -> dict[str, Any]:
    """Click Connect; the picture plays and the status line says `status`. The selected pair."""
    await ui.connect()
    await ui.status(status)
    pair = await ui.selected_pair()
    assert pair is not None
    return pair


async def watch(ui: BrokerPage, net: NatTopology) -> Traffic:
    """Watch the picture for a few seconds (its stamps advance); what crossed the public network
    meanwhile."""
    before = net.traffic()
    for _ in range(2):
        await stamps_advance(ui)  # type: ignore[arg-type]
    await ui.page.wait_for_timeout(1000)
    return net.traffic() - before


async def watched(
    ui: BrokerPage, net: NatTopology, status: str
) -> tuple[dict[str, Any], Traffic, str]:
    """Connect (the status line says `status`) and watch: the selected pair, what crossed the
    public network, and both in words for a failure's message."""
    pair = await connect(ui, status)
    traffic = await watch(ui, net)
    return pair, traffic, f"{pair}\n{traffic.summary()}"


async def command_completes(ui: BrokerPage, status: str) -> None:
    """Set the gain on the camera panel: the command settles without an error and the
    telescope's telemetry (over the data channel, from the simulator behind the proxy) reports
    the new value. Then, the field emptied, Disconnect and Connect again: the new session's
    first report fills the field with the telescope's gain, and the path is the same."""
    reported = "() => window.scopelink.telemetry.telescope?.settings.isp_gain ?? null"
    wanted = 150 if await ui.page.evaluate(reported) != 150 else 120
    await ui.by("gain").fill(str(wanted))
    await ui.by("gain-set").click()
    await ui.page.wait_for_function(f"() => ({reported})() === {wanted}", timeout=15_000)
    await expect(ui.by("gain-set")).to_be_enabled()  # settled
    assert not await ui.by("gain-error").is_visible(), await ui.by("gain-error").text_content()
    await ui.by("gain").fill("")
    await ui.disconnect()
    await ui.connect()
    await expect(ui.by("gain")).to_have_value(str(wanted))
    await ui.status(status)


def broker_bytes(traffic: Traffic) -> int:
    return traffic.between("a", "broker") + traffic.between("b", "broker")


def turn_bytes(traffic: Traffic, proto: str | None = None) -> int:
    return traffic.between("a", "turn", proto) + traffic.between("b", "turn", proto)


async def plays_direct(ui: BrokerPage, net: NatTopology) -> dict[str, Any]:
    """Connect: the page says direct, and it is: the video goes home to home, through neither
    TURN nor the broker, and a command completes. The selected pair."""
    pair, traffic, why = await watched(ui, net, STATUS_DIRECT)
    assert "relay" not in (pair["local"]["type"], pair["remote"]["type"]), why
    assert turn_bytes(traffic) < STRAY, f"the page says direct, the video went via TURN: {why}"
    assert traffic.direct("udp") > MEDIA, why
    assert broker_bytes(traffic) < BROKER_AT_MOST, why
    await command_completes(ui, STATUS_DIRECT)
    return pair


async def test_chromium_behind_a_cone_nat_plays_direct_and_the_broker_sees_no_media(
    make_topology: MakeTopology, tmp_path: Path
) -> None:
    net = make_topology("cone", "cone")
    async with signed_in(net, tmp_path) as ui:
        await plays_direct(ui, net)


async def test_chromium_behind_symmetric_nats_plays_through_the_relay(
    make_topology: MakeTopology, tmp_path: Path
) -> None:
    net = make_topology("symmetric", "symmetric")
    async with signed_in(net, tmp_path) as ui:
        pair, traffic, why = await watched(ui, net, STATUS_RELAYED)
        assert "relay" in (pair["local"]["type"], pair["remote"]["type"]), why
        assert turn_bytes(traffic, "udp") > 2 * MEDIA, why  # in to coturn and out again
        assert traffic.direct() < STRAY, why
        assert broker_bytes(traffic) < BROKER_AT_MOST, why
        await command_completes(ui, STATUS_RELAYED)


async def test_chromium_whose_network_blocks_udp_plays_through_turn_over_tcp_or_tls(
    make_topology: MakeTopology, tmp_path: Path
) -> None:
    net = make_topology("cone", "udp_blocked")
    async with signed_in(net, tmp_path) as ui:
        pair, traffic, why = await watched(ui, net, STATUS_RELAYED)
        assert pair["local"]["type"] == "relay", why
        assert pair["local"]["relayProtocol"] in ("tcp", "tls"), why
        # Chromium allocated on both TCP URLs the broker gave, TLS included: it trusted coturn's
        # certificate (the SPKI pin), so `turns:` works for a browser.
        assert pair["relayProtocols"] == ["tcp", "tls"], why
        assert traffic.between("b", "turn", "tcp") > MEDIA, why
        assert traffic.between("b", "turn", "udp") == 0, why
        assert traffic.between("a", "turn", "udp") > MEDIA, why  # coturn to the proxy's home
        assert broker_bytes(traffic) < BROKER_AT_MOST, why
        await command_completes(ui, STATUS_RELAYED)


async def test_chromium_over_ipv6_plays_direct_through_both_home_firewalls(
    make_topology: MakeTopology, tmp_path: Path
) -> None:
    net = make_topology("cone", "cone", family="ipv6")
    async with signed_in(net, tmp_path) as ui:
        pair = await plays_direct(ui, net)
        assert ":" in pair["remote"]["address"], pair  # an IPv6 address
