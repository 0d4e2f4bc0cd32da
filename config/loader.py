"""Load a :class:`DaemonConfig` from TOML, with errors that name the file, the key and what is expected."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from echemd.config.models import DaemonConfig
from echemd.daemon.errors import EchemdError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEFAULT_CONFIG_NAME = "<embedded default.toml>"


class ConfigError(EchemdError):
    """The configuration cannot be used; the message names the file, the key and what is expected."""


def default_config_text() -> str:
    """The embedded default configuration (a simulated lab), as TOML text."""
    return resources.files("echemd.config").joinpath("default.toml").read_text(encoding="utf-8")


def load_default_config() -> DaemonConfig:
    return parse_config(default_config_text(), DEFAULT_CONFIG_NAME)


def load_config(path: str | Path | None) -> DaemonConfig:
    """Load the configuration at ``path``, or the embedded default when ``path`` is None.

    Raises ConfigError when the file is missing, is not TOML, or fails validation.
    """
    if path is None:
        return load_default_config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror or exc}") from exc
    return parse_config(text, str(path))


def parse_config(text: str, source: str) -> DaemonConfig:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    try:
        return DaemonConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source, raw)) from exc


def _describe(exc: ValidationError, source: str, raw: dict) -> str:
    lines = [f"{source}: invalid configuration ({exc.error_count()} problem(s)):"]
    for error in exc.errors():
        key = _key_path(error["loc"], raw)
        expected = error["msg"]
        if error["type"] == "extra_forbidden":
            expected = "unknown key (check its spelling and the section it is in)"
        elif error["type"] == "missing":
            expected = "required key is missing"
        got = "" if error["type"] in ("missing", "extra_forbidden") else f" (got {error['input']!r})"
        lines.append(f"  {key}: {expected}{got}")
    return "\n".join(lines)


def _key_path(loc: tuple, raw: dict) -> str:
    """Render a pydantic error location as a TOML key path, e.g. ``instruments[0] "sim-pstat-1".cell.seed``.

    The discriminator value pydantic inserts after a list index (e.g. 'simulated-potentiostat') is
    dropped; the instrument's name is shown instead so the user finds the right table.
    """
    parts: list[str] = []
    node = raw
    skip_tag = False
    for item in loc:
        if skip_tag:
            skip_tag = False
            if isinstance(item, str) and not (isinstance(node, dict) and item in node):
                continue
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            parts[-1] += f"[{item}]" + (f" ({name})" if name else "")
            node = node[item] if isinstance(node, list) and item < len(node) else None
            skip_tag = True
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) if parts else "(top level)"
