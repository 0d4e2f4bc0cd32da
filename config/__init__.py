"""Validated configuration of the daemon and its instruments (pydantic models + TOML loader).

The models and the loader need pydantic (the ``daemon`` extra); they are imported on first use
(``echemd.config.DaemonConfig``), so that ``echemd.config.parameter_sets``, which the client's
``echemd run --params`` reads, loads none of it."""

import importlib

_LOADER = ("ConfigError", "default_config_text", "load_config", "load_default_config")
_MODELS = (
    "ClockSpeed",
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
)
__all__ = sorted(_LOADER + _MODELS)


def __getattr__(name: str):
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(".loader" if name in _LOADER else ".models", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
