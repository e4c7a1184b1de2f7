"""FastAPI dependencies: how a route reaches the services the app was built with."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from scopelink.services.registry import TelescopeRegistry
from scopelink.services.telescope import Telescope


def get_registry(request: Request) -> TelescopeRegistry:
    return request.app.state.registry


Registry = Annotated[TelescopeRegistry, Depends(get_registry)]


def get_telescope(
    registry: Registry,
    telescope_id: Annotated[str, Path(description="The telescope's id, e.g. `simulator`.")],
) -> Telescope:
    """The telescope named in the path; an unknown id becomes a 404 problem."""
    return registry.get(telescope_id)


TelescopeDep = Annotated[Telescope, Depends(get_telescope)]
