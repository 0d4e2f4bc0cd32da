"""The science: protocols as plain descriptions (parameters + plan) that the daemon's runner executes."""

from echemd.protocols.base import ProtocolDefinition, ProtocolRefused
from echemd.protocols.cafm import CAFM_SWEEP
from echemd.protocols.ccd import CCD

PROTOCOLS: dict[str, ProtocolDefinition] = {protocol.name: protocol for protocol in (CCD, CAFM_SWEEP)}

__all__ = ["CAFM_SWEEP", "CCD", "PROTOCOLS", "ProtocolDefinition", "ProtocolRefused"]
