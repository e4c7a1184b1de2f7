"""The REST API against the app with its simulator, over real sockets."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from scopelink import astro
from scopelink.settings import ServeSettings
from scopelink.simulator.simulator import Simulator, SimulatorConfig
from tests.web.conftest import RunningApp, serve, wait_connected

T = "/api/telescopes/simulator"


async def wait_operation(http: httpx.AsyncClient, op: dict[str, Any], timeout: float = 20) -> dict:
    for _ in range(int(timeout / 0.05)):
        current = (await http.get(f"{T}/operations/{op['id']}")).json()
        if current["state"] in ("complete", "fail", "cancel"):
            return current
        await asyncio.sleep(0.05)
    raise AssertionError(f"operation {op['id']} did not finish: {current}")


async def state(http: httpx.AsyncClient) -> dict[str, Any]:
    return (await http.get(T)).json()


async def test_the_simulator_is_listed_and_connected(http: httpx.AsyncClient) -> None:
    telescopes = (await http.get("/api/telescopes")).json()
    assert [t["id"] for t in telescopes] == ["simulator"]
    assert telescopes[0]["simulated"] is True and telescopes[0]["control"] == "connected"
    s = await state(http)
    assert s["device"]["model"] == "Seestar S50"
    assert s["power"]["battery_percent"] is not None


async def test_goto_by_name_slews_and_ends_tracking_at_the_target(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{T}/goto", json={"target": "M 81"})
    assert r.status_code == 200, r.text
    ack = r.json()
    assert ack["status"] == "accepted" and ack["operation"]["kind"] == "goto"
    done = await wait_operation(http, ack["operation"])
    assert done["state"] == "complete" and done["progress"] == 1.0
    assert done["target"] == "M 81"
    m81 = (await http.get("/api/catalog", params={"q": "M81"})).json()[0]
    await asyncio.sleep(2.5)  # the telemetry poll picks up the tracked position
    s = await state(http)
    sep = astro.equatorial_separation_deg(
        s["position"]["ra_hours"], s["position"]["dec_deg"], m81["ra_hours"], m81["dec_deg"]
    )
    assert sep < 0.1
    assert s["mount"]["tracking"] is True
    assert s["view"]["target_name"] == "M 81"


async def test_goto_by_coordinates(http: httpx.AsyncClient, running: RunningApp) -> None:
    mount = running.simulator.telescope.mount

    lst = astro.local_sidereal_hours(time.time(), mount.lon_deg)
    eq = astro.horizontal_to_equatorial(45.0, 200.0, mount.lat_deg, lst)
    r = await http.post(f"{T}/goto", json={"ra_hours": eq.ra_hours, "dec_deg": eq.dec_deg})
    done = await wait_operation(http, r.json()["operation"])
    assert done["state"] == "complete"


async def test_bad_parameters_are_422_naming_the_field(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{T}/goto", json={"ra_hours": 25, "dec_deg": 10})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["errors"][0]["field"] == "ra_hours"
    assert "ra_hours" in problem["detail"]
    r = await http.post(f"{T}/move", json={"direction": "sideways"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "direction"
    r = await http.post(f"{T}/focus", json={"position": 100, "delta": 5})
    assert r.status_code == 422 and "exactly one" in r.json()["detail"]


async def test_unknown_target_suggests_names(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{T}/goto", json={"target": "Andromeda Galaxxy"})
    assert r.status_code == 422
    assert "M 31" in r.json()["detail"]


async def test_unknown_telescope_is_a_404_problem(http: httpx.AsyncClient) -> None:
    r = await http.post("/api/telescopes/nope/park")
    assert r.status_code == 404
    assert r.json()["title"] == "Unknown telescope"


async def test_conflicting_motion_is_refused_with_a_reason(
    http: httpx.AsyncClient, running: RunningApp
) -> None:
    running.simulator.telescope.mount.slew_rate_deg_s = 3.0
    first = (await http.post(f"{T}/goto", json={"target": "M 81"})).json()
    r = await http.post(f"{T}/goto", json={"target": "Polaris"})
    assert r.status_code == 409
    assert "goto to M 81 is in progress" in r.json()["detail"]
    r = await http.post(f"{T}/park")
    assert r.status_code == 409
    r = await http.post(f"{T}/stop")
    assert r.status_code == 200
    done = await wait_operation(http, first["operation"])
    assert done["state"] == "cancel"


async def test_park_ends_parked(http: httpx.AsyncClient) -> None:
    await wait_operation(
        http, (await http.post(f"{T}/goto", json={"target": "M 81"})).json()["operation"]
    )
    r = await http.post(f"{T}/park")
    done = await wait_operation(http, r.json()["operation"])
    assert done["state"] == "complete" and done["message"] == "parked"
    s = await state(http)
    assert s["mount"]["parked"] is True and s["mount"]["tracking"] is False


async def test_move_tracking_and_stop(http: httpx.AsyncClient) -> None:
    await wait_operation(
        http, (await http.post(f"{T}/goto", json={"target": "M 81"})).json()["operation"]
    )
    r = await http.post(f"{T}/move", json={"direction": "up", "speed": 1440, "duration_s": 1})
    assert r.json()["status"] == "completed"
    assert (await http.post(f"{T}/stop")).status_code == 200
    r = await http.post(f"{T}/tracking", json={"on": False})
    assert r.json()["result"] == {"tracking": False}


async def test_focus_absolute_relative_and_autofocus(
    http: httpx.AsyncClient, running: RunningApp
) -> None:
    r = await http.post(f"{T}/focus", json={"position": 1500})
    done = await wait_operation(http, r.json()["operation"])
    assert done["state"] == "complete"
    r = await http.post(f"{T}/focus", json={"delta": -40})
    assert (await wait_operation(http, r.json()["operation"]))["state"] == "complete"
    assert running.simulator.telescope.focuser == 1460
    r = await http.post(f"{T}/autofocus")
    done = await wait_operation(http, r.json()["operation"], timeout=30)
    assert done["state"] == "complete"
    assert done["message"] == f"best focus at {running.simulator.telescope.focus_best}"


async def test_view_stack_and_stacked_image(http: httpx.AsyncClient) -> None:
    await http.post(f"{T}/settings/exposure", json={"stack_ms": 1000})
    assert (await http.post(f"{T}/view", json={"mode": "star"})).status_code == 200
    r = await http.post(f"{T}/stack", json={"restart": True})
    op = r.json()["operation"]
    assert op["kind"] == "stack"
    await asyncio.sleep(2.5)
    current = (await http.get(f"{T}/operations/{op['id']}")).json()
    assert current["state"] == "working" and "frames stacked" in current["message"]
    assert (await http.post(f"{T}/stack/stop")).status_code == 200
    done = await wait_operation(http, op)
    assert done["state"] == "complete"


async def test_settings_time_and_location(http: httpx.AsyncClient, running: RunningApp) -> None:
    for path, body in (
        ("settings/exposure", {"continuous_ms": 200}),
        ("settings/gain", {"gain": 100}),
        ("settings/lp-filter", {"on": True}),
        ("settings/dew-heater", {"on": True, "power_percent": 30}),
        ("time", {"time_zone": "Europe/Amsterdam"}),
        ("location", {"lat_deg": 48.2, "lon_deg": 16.4}),
    ):
        r = await http.post(f"{T}/{path}", json=body)
        assert r.status_code == 200, (path, r.text)
        assert r.json()["status"] == "completed"
    sim = running.simulator.telescope
    assert sim.gain == 100 and sim.settings["heater_enable"] is True
    assert sim.location == [16.4, 48.2]


async def test_the_generic_command_route_takes_any_command(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{T}/commands", json={"type": "set_gain", "gain": 90})
    assert r.status_code == 200 and r.json()["result"] == {"gain": 90}
    r = await http.post(f"{T}/commands", json={"type": "launch"})
    assert r.status_code == 422


async def test_same_idempotency_key_runs_once(http: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "focus-once"}
    first = await http.post(f"{T}/focus", json={"delta": 10}, headers=headers)
    again = await http.post(f"{T}/focus", json={"delta": 10}, headers=headers)
    assert first.json()["command_id"] == again.json()["command_id"]
    other = await http.post(f"{T}/focus", json={"delta": 20}, headers=headers)
    assert other.status_code == 409 and other.json()["title"] == "Idempotency key reused"


async def test_commands_are_rate_limited() -> None:
    async with serve(ServeSettings(command_rate=2.0)) as app:
        async with httpx.AsyncClient(base_url=app.base_url) as http:
            await wait_connected(http)
            codes = [
                (await http.post(f"{T}/tracking", json={"on": False})).status_code for _ in range(8)
            ]
            assert 429 in codes
            assert codes[0] != 429


async def test_telescope_that_vanishes_mid_goto_fails_the_operation_and_recovers(
    http: httpx.AsyncClient, running: RunningApp
) -> None:
    sim = running.simulator
    sim.telescope.mount.slew_rate_deg_s = 3.0
    op = (await http.post(f"{T}/goto", json={"target": "M 81"})).json()["operation"]
    sim.faults.stall(1.5)
    sim.faults.drop()
    done = await wait_operation(http, op)
    assert done["state"] == "fail"
    assert "lost the connection" in done["error"]
    r = await http.post(f"{T}/tracking", json={"on": True})
    assert r.status_code in (502, 503, 504, 422)
    await asyncio.sleep(2.0)
    await wait_connected(http)
    assert (await http.post(f"{T}/stop")).status_code == 200


async def test_telescopes_can_be_added_and_removed_at_run_time(http: httpx.AsyncClient) -> None:
    # An S30 on ports of its own, every one of them given: control, imaging, RTSP, and the
    # wide camera's imaging and RTSP.
    config = SimulatorConfig.ephemeral(serial="feedbeef", model="S30")
    async with Simulator(config) as other:
        assert other.wide_imaging is not None and other.wide_rtsp is not None
        r = await http.post(
            "/api/telescopes",
            json={
                "host": "127.0.0.1",
                "name": "Second",
                "control_port": other.control.port,
                "imaging_port": other.imaging.port,
                "rtsp_port": other.rtsp.port,
                "wide_imaging_port": other.wide_imaging.port,
                "wide_rtsp_port": other.wide_rtsp.port,
            },
        )
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        assert tid == "second"
        await wait_connected(http, tid)
        assert (await http.get(f"/api/telescopes/{tid}")).json()["device"]["serial"] == "feedbeef"
        # The wide camera's pictures come from its own imaging port...
        wide = await http.get(f"/api/telescopes/{tid}/snapshot.jpg", params={"camera": "wide"})
        assert wide.status_code == 200 and wide.content.startswith(b"\xff\xd8"), wide.text
        # ... and in the Moon view the main camera's from its RTSP port (landscape video).
        r = await http.post(
            f"/api/telescopes/{tid}/commands", json={"type": "start_view", "mode": "moon"}
        )
        assert r.status_code == 200, r.text
        for _ in range(100):
            moon = await http.get(f"/api/telescopes/{tid}/snapshot.jpg")
            if moon.status_code == 200:
                width, height = _jpeg_size(moon.content)
                if width > height:
                    break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"no landscape video from the RTSP port: {moon.status_code}")
        assert (await http.delete(f"/api/telescopes/{tid}")).status_code == 204
        assert (await http.get(f"/api/telescopes/{tid}")).status_code == 404


async def test_openapi_document_lists_the_commands(http: httpx.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    assert "/api/telescopes/{telescope_id}/goto" in doc["paths"]
    assert "/api/telescopes/{telescope_id}/events" in doc["paths"]


async def test_catalogue_search_gives_altitude_at_the_telescope_site(
    http: httpx.AsyncClient,
) -> None:
    r = await http.get("/api/catalog", params={"q": "polaris", "telescope_id": "simulator"})
    polaris = r.json()[0]
    assert polaris["name"] == "Polaris" and polaris["kind"] == "star"
    assert abs(polaris["alt_deg"] - 52.0) < 1.5, "Polaris stands at the site's latitude"
    r = await http.get("/api/catalog", params={"q": "jupiter"})
    assert r.json()[0]["kind"] == "planet"
    assert (await http.get("/api/catalog", params={"q": ""})).status_code == 422


async def test_operations_history_session_and_health(http: httpx.AsyncClient) -> None:
    op = (await http.post(f"{T}/focus", json={"delta": 5})).json()["operation"]
    await wait_operation(http, op)
    history = (await http.get(f"{T}/operations")).json()
    assert [o["id"] for o in history][-1] == op["id"]
    assert (await http.get(f"{T}/operations/nope")).status_code == 404
    assert (await http.get("/api/session")).json() == {
        "role": "operator",
        "token_required": False,
        "webrtc_default": True,
    }
    assert (await http.get("/api/health")).json() == {"status": "ok"}


# -- the video views: zoom and recording --------------------------------------------------------


async def wait_state(
    http: httpx.AsyncClient, check: Any, what: str, timeout: float = 15
) -> dict[str, Any]:
    """The telescope's state once `check(state)` holds (telemetry, as every client sees it)."""
    for _ in range(int(timeout / 0.05)):
        s = await state(http)
        if check(s):
            return s
        await asyncio.sleep(0.05)
    raise AssertionError(f"never {what}: {s}")


async def test_zoom_changes_the_video_and_telemetry_says_so(
    http: httpx.AsyncClient, running: RunningApp
) -> None:
    assert (await http.post(f"{T}/view", json={"mode": "moon"})).status_code == 200
    await wait_state(http, lambda s: s["view"]["stage"] == "RTSP", "in the Moon's video view")
    for zoom, roi_index in ((2, 1), (4, 2), (1, 0)):
        r = await http.post(f"{T}/zoom", json={"zoom": zoom})
        assert r.status_code == 200, r.text
        assert r.json()["result"] == {"zoom": zoom}
        assert running.simulator.telescope.settings["rtsp_roi_index"] == roi_index
        await wait_state(http, lambda s, z=zoom: s["view"]["zoom"] == z, f"at zoom {zoom}")


async def test_zoom_is_1_2_or_4(http: httpx.AsyncClient) -> None:
    r = await http.post(f"{T}/zoom", json={"zoom": 3})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "zoom"


async def test_recording_starts_counts_frames_and_stops_saved(http: httpx.AsyncClient) -> None:
    await http.post(f"{T}/view", json={"mode": "planet"})
    await wait_state(http, lambda s: s["view"]["stage"] == "RTSP", "in the planet's video view")
    r = await http.post(f"{T}/recording")
    assert r.status_code == 200, r.text
    await wait_state(http, lambda s: s["recording"]["active"], "recording")
    # While it records, the poll brings the frame count (events come at start and stop only).
    s = await wait_state(
        http, lambda s: (s["recording"]["saved_frames"] or 0) > 0, "counting frames", timeout=8
    )
    assert s["recording"]["lapse_ms"] > 0
    assert (await http.post(f"{T}/recording/stop")).status_code == 200
    done = await wait_state(http, lambda s: not s["recording"]["active"], "stopped")
    assert done["recording"]["state"] == "complete" and done["recording"]["file_saved"] is True
    assert done["recording"]["saved_frames"] >= s["recording"]["saved_frames"]


async def test_recording_outside_the_video_views_is_refused_with_a_reason(
    http: httpx.AsyncClient,
) -> None:
    await http.post(f"{T}/view", json={"mode": "star"})
    r = await http.post(f"{T}/recording")
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["detail"] == (
        "start recording: recording needs a Moon, Sun, planet or scenery view"
    )
    assert problem["telescope_code"] == 207 and problem["outcome"] == "not_run"
    r = await http.post(f"{T}/recording/stop")
    assert r.status_code == 422
    assert r.json()["detail"] == "stop recording: the telescope is not recording"


async def test_recording_twice_says_it_already_records(http: httpx.AsyncClient) -> None:
    await http.post(f"{T}/view", json={"mode": "scenery"})
    await wait_state(http, lambda s: s["view"]["stage"] == "RTSP", "in the scenery view")
    assert (await http.post(f"{T}/recording")).status_code == 200
    r = await http.post(f"{T}/recording")
    assert r.status_code == 422
    assert r.json()["detail"] == "start recording: the telescope is already recording"


async def test_recording_is_for_operators_only() -> None:
    settings = ServeSettings(tokens={"op": "operator", "look": "viewer"})
    async with serve(settings) as app:
        async with httpx.AsyncClient(base_url=app.base_url) as http:
            r = await http.post(f"{T}/recording", headers={"Authorization": "Bearer look"})
            assert r.status_code == 403
            r = await http.post(
                f"{T}/zoom", json={"zoom": 2}, headers={"Authorization": "Bearer look"}
            )
            assert r.status_code == 403


async def test_goto_the_moon_by_name_starts_the_moon_view(
    http: httpx.AsyncClient, running: RunningApp
) -> None:
    # Stand where the Moon culminates 60° up now, so the goto can reach it.
    moon = (await http.get("/api/catalog", params={"q": "Moon"})).json()[0]
    now = time.time()
    lon = astro.wrap_deg_signed((moon["ra_hours"] - astro.local_sidereal_hours(now, 0.0)) * 15)
    lat = moon["dec_deg"] - 30.0
    r = await http.post(f"{T}/location", json={"lat_deg": lat, "lon_deg": lon})
    assert r.status_code == 200
    r = await http.post(f"{T}/goto", json={"target": "Moon"})
    assert r.status_code == 200, r.text
    assert running.simulator.telescope.view.mode == "moon"
    done = await wait_operation(http, r.json()["operation"])
    assert done["state"] == "complete"
    await wait_state(
        http,
        lambda s: s["view"]["mode"] == "moon" and s["view"]["stage"] == "RTSP",
        "in the Moon's video view",
    )


@pytest.mark.parametrize(
    ("model", "product_model", "cameras"),
    [("S50", "Seestar S50", ["main"]), ("S30", "Seestar S30", ["main", "wide"])],
)
async def test_the_summary_and_telemetry_name_the_model_and_its_cameras(
    model: str, product_model: str, cameras: list[str]
) -> None:
    async with (
        serve(ServeSettings(simulator_model=model)) as running,
        httpx.AsyncClient(base_url=running.base_url, timeout=10) as http,
    ):
        await wait_connected(http)
        summary = (await http.get("/api/telescopes")).json()[0]
        assert (summary["model"], summary["cameras"]) == (product_model, cameras)
        device = (await state(http))["device"]
        assert (device["model"], device["cameras"]) == (product_model, cameras)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG."""
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert picture is not None, "not a JPEG"
    return picture.shape[1], picture.shape[0]
