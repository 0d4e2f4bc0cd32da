"""Instrument drivers: the interfaces protocols code against, and the concrete instruments."""

from echemd.drivers.base import (
    Block,
    DriverError,
    DriverUnavailable,
    Instrument,
    InstrumentRefused,
    Potentiostat,
    PotentiostatCapabilities,
    Sourcemeter,
    SourcemeterCapabilities,
)
from echemd.drivers.registry import open_instrument

__all__ = [
    "Block",
    "DriverError",
    "DriverUnavailable",
    "Instrument",
    "InstrumentRefused",
    "Potentiostat",
    "PotentiostatCapabilities",
    "Sourcemeter",
    "SourcemeterCapabilities",
    "open_instrument",
]
