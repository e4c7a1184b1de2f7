"""One telescope: its control and imaging links and the per-telescope services built on them."""

from __future__ import annotations

import logging
import re

from scopelink.catalog import Site
from scopelink.seestar.commands import SeestarCommands
from scopelink.seestar.control import ControlClient
from scopelink.seestar.imaging import ImagingClient
from scopelink.seestar.link import ConnectionState
from scopelink.services.frame_pipeline import FramePipeline
from scopelink.services.operations import OperationTracker
from scopelink.settings import TelescopeTarget

log = logging.getLogger(__name__)

_ID_CHARS = re.compile(r"[^a-z0-9-]+")


def telescope_id_for(name: str) -> str:
    """A URL-safe id from a name: lower case letters, digits and dashes."""
    return _ID_CHARS.sub("-", name.lower()).strip("-") or "telescope"


class TelescopeSession:
    """Links to one telescope plus its command layer and frame pipeline."""

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
        self.operations = OperationTracker(telescope_id)
        self.control.add_state_listener(self._on_control_state)

    def _on_control_state(self, state: ConnectionState) -> None:
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
        self.control.start()
        self.imaging.start()
        await self.pipeline.start()

    async def stop(self) -> None:
        await self.pipeline.stop()
        await self.imaging.close()
        await self.control.close()
