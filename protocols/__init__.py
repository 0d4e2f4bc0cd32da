"""The science: protocols as plain descriptions (parameters + plan) that the daemon's runner executes.

Their numerics (detectors, fits, analyses) are in :mod:`echemd.protocols.analysis`, the files they
are read from and written to in :mod:`echemd.protocols.io`.

The registry is built on first use (PEP 562), so that importing one module of this package (the
short detector's options for the CLI, say) does not import every protocol and its numerics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from echemd.protocols.base import ProtocolDefinition

__all__ = ["CAFM_SWEEP", "CCD", "CCD_RAMP", "CSC", "CYCLING", "EIS", "MEMRISTOR", "PLATE_UNTIL_SHORT", "PROTOCOLS", "ProtocolDefinition", "ProtocolRefused"]


def _registry() -> dict[str, Any]:
    from echemd.protocols.base import ProtocolDefinition, ProtocolRefused
    from echemd.protocols.cafm import CAFM_SWEEP
    from echemd.protocols.ccd import CCD
    from echemd.protocols.csc import CSC
    from echemd.protocols.eis import EIS
    from echemd.protocols.memristor import MEMRISTOR
    from echemd.protocols.plating import CCD_RAMP, CYCLING, PLATE_UNTIL_SHORT

    protocols: dict[str, ProtocolDefinition] = {
        protocol.name: protocol for protocol in (CCD, CSC, CCD_RAMP, PLATE_UNTIL_SHORT, CYCLING, CAFM_SWEEP, MEMRISTOR, EIS)
    }
    return {"CAFM_SWEEP": CAFM_SWEEP, "CCD": CCD, "CCD_RAMP": CCD_RAMP, "CSC": CSC, "CYCLING": CYCLING, "EIS": EIS, "MEMRISTOR": MEMRISTOR,
            "PLATE_UNTIL_SHORT": PLATE_UNTIL_SHORT, "PROTOCOLS": protocols, "ProtocolDefinition": ProtocolDefinition,
            "ProtocolRefused": ProtocolRefused}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'echemd.protocols' has no attribute {name!r}")
    globals().update(_registry())
    return globals()[name]
