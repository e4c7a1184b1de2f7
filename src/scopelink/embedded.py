"""The built-in simulator inside an entry point's process: what `scopelink serve` runs when no
telescope is given, so a new user without a telescope has the whole product.

It is started here, by the entry points (and by tests and benchmarks that stand in for one),
not by the services: the telescope registry knows telescopes, not where they come from, and a
telescope-side proxy never carries a simulator.
"""

from __future__ import annotations

from scopelink.services.registry import TelescopeRegistry
from scopelink.settings import ServeSettings, TelescopeTarget
from scopelink.simulator.simulator import Simulator, SimulatorConfig

#: The simulator's telescope id in the registry (and in URLs).
SIMULATOR_ID = "simulator"


async def start_simulator(registry: TelescopeRegistry, settings: ServeSettings) -> Simulator:
    """Run the built-in simulator (`settings.simulator_fps`, `simulator_model`) in this process
    on free loopback ports and add it to `registry` as telescope `simulator`. The caller stops
    it (`Simulator.stop()`) after the registry."""
    config = SimulatorConfig.ephemeral(fps=settings.simulator_fps, model=settings.simulator_model)
    simulator = Simulator(config)
    await simulator.start()
    try:
        await registry.add(simulator_target(simulator), telescope_id=SIMULATOR_ID, simulated=True)
    except BaseException:
        await simulator.stop()
        raise
    return simulator


def simulator_target(simulator: Simulator) -> TelescopeTarget:
    """How to reach a running simulator, as a telescope to connect to."""
    target = TelescopeTarget(
        host=simulator.host,
        control_port=simulator.control.port,
        imaging_port=simulator.imaging.port,
        rtsp_port=simulator.rtsp.port,
        name="Simulator",
        key_pem=simulator.key_pem,
    )
    if simulator.wide_imaging is not None and simulator.wide_rtsp is not None:
        target.wide_imaging_port = simulator.wide_imaging.port
        target.wide_rtsp_port = simulator.wide_rtsp.port
    return target
