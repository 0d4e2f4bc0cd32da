"""Simulated instruments on physical cell models, so every protocol runs without hardware."""

from echemd.drivers.simulated.cell import SymmetricCell
from echemd.drivers.simulated.clock import SimClock
from echemd.drivers.simulated.junction import TipJunction
from echemd.drivers.simulated.potentiostat import SimulatedPotentiostat
from echemd.drivers.simulated.sourcemeter import SimulatedSourcemeter

__all__ = ["SimClock", "SimulatedPotentiostat", "SimulatedSourcemeter", "SymmetricCell", "TipJunction"]
