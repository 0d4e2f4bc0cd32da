"""Parameter sets: a run's protocol parameters kept in a file (TOML or JSON), and the sets echemd
ships for the published protocols (``echemd run --params ccd-li6ps5cl``).

A set is one table of ``parameter = value``; an optional ``protocol`` key names the protocol it is
for.  Anything that cannot be read raises :class:`ParameterSetError` saying why.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from echemd.daemon.errors import EchemdError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class ParameterSetError(EchemdError):
    """A parameter set that cannot be found or read."""


def shipped() -> dict[str, str]:
    """The shipped parameter sets: name -> the first line of their description."""
    folder = resources.files("echemd.config").joinpath("parameter_sets")
    found = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            first = next((line[1:].strip() for line in entry.read_text(encoding="utf-8").splitlines() if line.startswith("#")), "")
            found[entry.name[: -len(".toml")]] = first
    return found


def load(spec: str) -> tuple[str | None, dict[str, Any]]:
    """(protocol or None, parameters) of the set in file ``spec`` (.toml or .json), or of the
    shipped set named ``spec``."""
    path = Path(spec)
    if path.is_file():
        text, name = _read(path), str(path)
        as_json = path.suffix.lower() == ".json"
    elif spec in shipped():
        text, name, as_json = resources.files("echemd.config").joinpath("parameter_sets", f"{spec}.toml").read_text(encoding="utf-8"), spec, False
    else:
        raise ParameterSetError(f"{spec}: no such file, nor a shipped parameter set (shipped: {', '.join(shipped())})")
    try:
        values = json.loads(text) if as_json else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ParameterSetError(f"{name}: not valid {'JSON' if as_json else 'TOML'}: {exc}") from None
    if not isinstance(values, dict):
        raise ParameterSetError(f"{name}: a parameter set is one table (object) of parameter = value")
    protocol = values.pop("protocol", None)
    if protocol is not None and not isinstance(protocol, str):
        raise ParameterSetError(f"{name}: protocol must be a protocol's name")
    return protocol, values


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterSetError(f"{path}: cannot read it: {exc}") from None
