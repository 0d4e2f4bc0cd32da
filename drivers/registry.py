"""Build the driver an instrument's configuration names.  The daemon's only way to get an instrument."""

from __future__ import annotations

from echemd.config.models import GamryConfig, Keithley2400Config, SimulatedPotentiostatConfig, SimulatedSourcemeterConfig
from echemd.drivers.base import Instrument
from echemd.drivers.simulated.clock import SimClock
from echemd.drivers.simulated.potentiostat import SimulatedPotentiostat
from echemd.drivers.simulated.sourcemeter import SimulatedSourcemeter

InstrumentConfig = SimulatedPotentiostatConfig | SimulatedSourcemeterConfig | Keithley2400Config | GamryConfig


def make_instrument(config: InstrumentConfig, sim_speed: float | str | None = None) -> Instrument:
    """The driver for ``config``, not yet connected; ``sim_speed`` overrides a simulator's clock.

    Raises DriverUnavailable when the driver cannot work on this machine at all.
    """
    if isinstance(config, SimulatedPotentiostatConfig):
        return SimulatedPotentiostat(config, SimClock(sim_speed or config.clock))
    if isinstance(config, SimulatedSourcemeterConfig):
        return SimulatedSourcemeter(config, SimClock(sim_speed or config.clock))
    if isinstance(config, Keithley2400Config):
        from echemd.drivers.keithley2400 import Keithley2400Sourcemeter

        if sim_speed is not None:
            config = config.model_copy(update={"clock": sim_speed})
        return Keithley2400Sourcemeter(config)
    if isinstance(config, GamryConfig):
        from echemd.drivers.gamry import GamryPotentiostat

        if sim_speed is not None:
            config = config.model_copy(update={"clock": sim_speed})
        return GamryPotentiostat(config)  # raises DriverUnavailable where GamryCOM cannot run
    raise TypeError(f"no driver for {type(config).__name__}")  # pragma: no cover - the config union is closed


def open_instrument(config: InstrumentConfig, sim_speed: float | str | None = None) -> Instrument:
    """A connected instrument for ``config``; raises DriverError when it cannot be reached."""
    instrument = make_instrument(config, sim_speed)
    instrument.open()
    return instrument
