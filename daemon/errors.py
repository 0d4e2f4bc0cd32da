"""echemd's root exception, and the errors the control API reports (a stable ``code``, a human
message and optional details).  This module imports nothing of echemd: every layer raises
subclasses of :class:`EchemdError`."""

from __future__ import annotations

from typing import Any


class EchemdError(Exception):
    """Root of every error echemd raises on purpose (refusals, unreadable files, faults, API errors):
    ``except EchemdError`` catches what echemd says went wrong and nothing else.  Not a ValueError:
    a bug in echemd (a ValueError from numpy, say) is not mistaken for bad input."""


class ApiError(EchemdError):
    """An error reply: ``{"code": ..., "message": ..., "details": ...}``.

    Codes: bad_request (not a valid request envelope), unknown_method, invalid_params (the
    method's own parameters), unknown_protocol, unknown_instrument, invalid_parameters (the
    protocol's parameters; details list each field and reason), refused (beyond the instrument or
    its limits), unknown_run, unreadable (a run file no HDF5 reader opens), shutting_down, storage (the data folder cannot take a submission
    record), internal.
    """

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}
