"""One telescope: its control link, its cameras and the per-telescope services built on them.

The session learns the telescope's model from `get_device_state` on every connect (or, before
that, from discovery) and holds one `Camera` per camera the model has: the main one always, the
wide-angle one (imaging port 4804, RTSP 4555) only on models that have it, so an S50 opens no
link for a camera it lacks.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from scopelink.catalog import Site
from scopelink.schema.state import CameraName
from scopelink.seestar.commands import SeestarCommands
from scopelink.seestar.control import ControlClient
from scopelink.seestar.imaging import ImagingClient
from scopelink.seestar.link import ConnectionState
from scopelink.seestar.models import ModelFacts, model_named
from scopelink.services.frame_pipeline import FramePipeline
from scopelink.services.operations import OperationTracker
from scopelink.settings import TelescopeTarget

log = logging.getLogger(__name__)

# Unknown product models already warned about: once per name for the process, not per reconnect.
_UNKNOWN_MODELS_LOGGED: set[str] = set()


@dataclass(frozen=True, slots=True)
class Camera:
    """One camera of the telescope: its imaging link and the frame pipeline over it."""

    name: CameraName
    imaging: ImagingClient
    pipeline: FramePipeline


class NoSuchCameraError(LookupError):
    """The telescope has no camera of that name (an S50 has no wide camera)."""

    def __init__(self, telescope: str, camera: str) -> None:
        super().__init__(f"this {telescope} has no {camera} camera")
        self.camera = camera


_ID_CHARS = re.compile(r"[^a-z0-9-]+")


def telescope_id_for(name: str) -> str:
    """A URL-safe id from a name: lower case letters, digits and dashes."""
    return _ID_CHARS.sub("-", name.lower()).strip("-") or "telescope"


class Telescope:
    """Links to one telescope plus its command layer and its cameras' frame pipelines."""

    def __init__(self, telescope_id: str, target: TelescopeTarget, *, simulated: bool = False):
        self.id = telescope_id
        self.target = target
        self.name = target.name or target.host
        self.simulated = simulated
        self.control = ControlClient(
            target.host, target.control_port, private_key_pem=target.key_pem
        )
        self.imaging = ImagingClient(target.host, target.imaging_port)
        self.commands = SeestarCommands(self.control)
        self.pipeline = FramePipeline(self.imaging, video_port=target.rtsp_port)
        self.main = Camera("main", self.imaging, self.pipeline)
        #: The wide-angle camera, while the model is known to have one.
        self.wide: Camera | None = None
        #: `product_model` as reported ("Seestar S30"); None until the telescope says.
        self.product_model: str | None = None
        #: The model's facts; None while unknown or for a model not in `seestar.models`.
        self.model: ModelFacts | None = None
        #: The view stage from telemetry, which every camera's live source follows.
        self.stage: str | None = None
        self.operations = OperationTracker(telescope_id)
        self._started = False
        self._camera_tasks: set[asyncio.Task[None]] = set()
        self.control.add_state_listener(self._on_control_state)
        if target.model:
            self._learn_model(target.model)

    # -- model and cameras ------------------------------------------------------------------------

    @property
    def cameras(self) -> dict[CameraName, Camera]:
        """The cameras this telescope has, by name; "main" first."""
        cameras: dict[CameraName, Camera] = {"main": self.main}
        if self.wide is not None:
            cameras["wide"] = self.wide
        return cameras

    def camera(self, name: str) -> Camera:
        """The camera called `name`; NoSuchCameraError if the telescope has none."""
        for key, camera in self.cameras.items():
            if key == name:
                return camera
        raise NoSuchCameraError(self.product_model or "telescope (model not known yet)", name)

    def _learn_model(self, product_model: Any) -> None:
        """Take the model the telescope reports; open or close the wide camera to match."""
        if not isinstance(product_model, str) or not product_model:
            return
        try:
            model: ModelFacts | None = model_named(product_model)
        except KeyError:
            model = None
            if product_model not in _UNKNOWN_MODELS_LOGGED:
                _UNKNOWN_MODELS_LOGGED.add(product_model)
                log.warning(
                    "%s: unknown Seestar model %r; treated as a single-camera model like the S50",
                    self.id,
                    product_model,
                )
        self.product_model, self.model = product_model, model
        has_wide = model is not None and model.wide is not None
        if has_wide and self.wide is None:
            imaging = ImagingClient(self.target.host, self.target.wide_imaging_port, name="wide")
            pipeline = FramePipeline(imaging, video_port=self.target.wide_rtsp_port)
            self.wide = Camera("wide", imaging, pipeline)
            if self._started:
                self._in_background(self._start_camera(self.wide))
        elif not has_wide and self.wide is not None:
            # Another telescope answers at this address now (or it was misreported before).
            wide, self.wide = self.wide, None
            self._in_background(self._stop_camera(wide))

    def _in_background(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(job, name=f"{self.id}-camera")
        self._camera_tasks.add(task)
        task.add_done_callback(self._camera_done)

    def _camera_done(self, task: asyncio.Task[None]) -> None:
        self._camera_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: opening or closing a camera failed", self.id, exc_info=task.exception())

    async def _start_camera(self, camera: Camera) -> None:
        camera.imaging.start()
        await camera.pipeline.start()
        await camera.pipeline.set_stage(self.stage)

    @staticmethod
    async def _stop_camera(camera: Camera) -> None:
        await camera.pipeline.stop()
        await camera.imaging.close()

    async def set_stage(self, stage: str | None) -> None:
        """The view stage (from telemetry): every camera's live source follows it."""
        self.stage = stage
        await asyncio.gather(*(c.pipeline.set_stage(stage) for c in self.cameras.values()))

    # -- links ------------------------------------------------------------------------------------

    def _on_control_state(self, state: ConnectionState) -> None:
        if state is ConnectionState.CONNECTED:
            device = self.control.device_state.get("device") or {}
            self._learn_model(device.get("product_model") if isinstance(device, dict) else None)
        if state in (ConnectionState.RECONNECTING, ConnectionState.CLOSED):
            # The telescope may go on with what it was doing; we can no longer follow it.
            self.operations.fail_all(
                f"lost the connection to the telescope ({self.control.last_error or state}); "
                "it may still be carrying the operation out"
            )

    @property
    def host(self) -> str:
        return self.target.host

    @property
    def site(self) -> Site | None:
        """Where the telescope stands, as it reported on connect (or was last told)."""
        lon_lat = self.control.device_state.get("location_lon_lat")
        if isinstance(lon_lat, list) and len(lon_lat) == 2:
            return Site(lat_deg=float(lon_lat[1]), lon_deg=float(lon_lat[0]))
        return None

    async def start(self) -> None:
        """Start connecting (in the background; the links retry until they succeed)."""
        self._started = True
        self.control.start()
        for camera in self.cameras.values():
            await self._start_camera(camera)

    async def stop(self) -> None:
        self._started = False
        # A camera being opened or closed: let it finish (its failure is logged), then close it.
        await asyncio.gather(*self._camera_tasks, return_exceptions=True)
        for camera in self.cameras.values():
            await self._stop_camera(camera)
        await self.control.close()
