"""Build the driver an instrument's configuration names.  The daemon's only way to get an instrument."""

from __future__ import annotations

from echemd.config.models import SimulatedPotentiostatConfig, SimulatedSourcemeterConfig
from echemd.drivers.base import Instrument
from echemd.drivers.simulated.clock import SimClock
from echemd.drivers.simulated.potentiostat import SimulatedPotentiostat
from echemd.drivers.simulated.sourcemeter import SimulatedSourcemeter


def open_instrument(config: SimulatedPotentiostatConfig | SimulatedSourcemeterConfig, sim_speed: float | str | None = None) -> Instrument:
    """A connected instrument for ``config``; ``sim_speed`` overrides a simulated instrument's clock."""
    if isinstance(config, SimulatedPotentiostatConfig):
        instrument: Instrument = SimulatedPotentiostat(config, SimClock(sim_speed or config.clock))
    elif isinstance(config, SimulatedSourcemeterConfig):
        instrument = SimulatedSourcemeter(config, SimClock(sim_speed or config.clock))
    else:  # pragma: no cover - the config union is closed
        raise TypeError(f"no driver for {type(config).__name__}")
    instrument.open()
    return instrument
