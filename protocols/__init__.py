"""The science: protocols as plain descriptions (parameters + plan) that the daemon's runner executes."""

from echemd.protocols.base import ProtocolDefinition, ProtocolRefused
from echemd.protocols.cafm import CAFM_SWEEP
from echemd.protocols.ccd import CCD
from echemd.protocols.eis import EIS

PROTOCOLS: dict[str, ProtocolDefinition] = {protocol.name: protocol for protocol in (CCD, CAFM_SWEEP, EIS)}

__all__ = ["CAFM_SWEEP", "CCD", "EIS", "PROTOCOLS", "ProtocolDefinition", "ProtocolRefused"]
