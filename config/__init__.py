"""Validated configuration of the daemon and its instruments (pydantic models + TOML loader)."""

from echemd.config.loader import ConfigError, default_config_text, load_config, load_default_config
from echemd.config.models import (
    ClockSpeed,
    DaemonConfig,
    GamryConfig,
    InstrumentConfig,
    InstrumentLimits,
    Keithley2400Config,
    RunLimits,
    RunMetadata,
    SimulatedPotentiostatConfig,
    SimulatedSourcemeterConfig,
    SymmetricCellConfig,
    TipJunctionConfig,
)

__all__ = [
    "ClockSpeed",
    "ConfigError",
    "DaemonConfig",
    "GamryConfig",
    "InstrumentConfig",
    "InstrumentLimits",
    "Keithley2400Config",
    "RunLimits",
    "RunMetadata",
    "SimulatedPotentiostatConfig",
    "SimulatedSourcemeterConfig",
    "SymmetricCellConfig",
    "TipJunctionConfig",
    "default_config_text",
    "load_config",
    "load_default_config",
]
