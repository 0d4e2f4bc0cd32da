"""The science: protocols as plain descriptions (parameters + plan) that the daemon's runner executes."""

from echemd.protocols.base import ProtocolDefinition, ProtocolRefused
from echemd.protocols.cafm import CAFM_SWEEP
from echemd.protocols.ccd import CCD
from echemd.protocols.csc import CSC
from echemd.protocols.eis import EIS
from echemd.protocols.memristor import MEMRISTOR
from echemd.protocols.plating import CCD_RAMP, CYCLING, PLATE_UNTIL_SHORT

PROTOCOLS: dict[str, ProtocolDefinition] = {
    protocol.name: protocol for protocol in (CCD, CSC, CCD_RAMP, PLATE_UNTIL_SHORT, CYCLING, CAFM_SWEEP, MEMRISTOR, EIS)
}

__all__ = ["CAFM_SWEEP", "CCD", "CCD_RAMP", "CSC", "CYCLING", "EIS", "MEMRISTOR", "PLATE_UNTIL_SHORT", "PROTOCOLS", "ProtocolDefinition", "ProtocolRefused"]
