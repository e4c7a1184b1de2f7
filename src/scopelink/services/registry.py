"""The telescopes the app knows: configured, discovered, or added at run time (the built-in
simulator is added by the entry point that runs it: `scopelink.embedded`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from scopelink.seestar.discovery import scan
from scopelink.services.telescope import Telescope, telescope_id_for
from scopelink.settings import HostSettings, TelescopeTarget

log = logging.getLogger(__name__)

Listener = Callable[[Telescope], None]


class UnknownTelescopeError(LookupError):
    """No telescope has that id."""

    def __init__(self, telescope_id: str) -> None:
        super().__init__(f"no telescope with id {telescope_id!r}")
        self.telescope_id = telescope_id


class TelescopeRegistry:
    """Owns every Telescope."""

    def __init__(self, settings: HostSettings) -> None:
        self.settings = settings
        self._sessions: dict[str, Telescope] = {}
        self._added: list[Listener] = []
        self._removed: list[Listener] = []

    def on_added(self, listener: Listener) -> None:
        self._added.append(listener)

    def on_removed(self, listener: Listener) -> None:
        self._removed.append(listener)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, telescope_id: str) -> Telescope:
        try:
            return self._sessions[telescope_id]
        except KeyError:
            raise UnknownTelescopeError(telescope_id) from None

    async def start(self) -> None:
        for target in self.settings.telescopes:
            await self.add(target)
        if self.settings.discover:
            report = await scan(timeout=3.0)
            for found in report.telescopes:
                await self.add(
                    TelescopeTarget(
                        host=found.ip, name=f"{found.model} {found.serial}", model=found.model
                    )
                )

    async def add(
        self,
        target: TelescopeTarget,
        *,
        telescope_id: str | None = None,
        simulated: bool = False,
    ) -> Telescope:
        base = telescope_id or telescope_id_for(target.name or target.host)
        tid, n = base, 2
        while tid in self._sessions:
            tid, n = f"{base}-{n}", n + 1
        session = Telescope(tid, target, simulated=simulated)
        self._sessions[tid] = session
        await session.start()
        for listener in self._added:
            listener(session)
        log.info("telescope %s added (%s)", tid, target.host)
        return session

    async def remove(self, telescope_id: str) -> None:
        session = self.get(telescope_id)
        del self._sessions[telescope_id]
        for listener in self._removed:
            listener(session)
        await session.stop()
        log.info("telescope %s removed", telescope_id)

    async def stop(self) -> None:
        for tid in list(self._sessions):
            await self.remove(tid)
