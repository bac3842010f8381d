"""Loading a configuration: files (YAML, TOML, JSON), dicts, ``${VAR}`` interpolation, environment detection."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ._config import Config
from ._errors import ConfigError
from .providers._configs import OpenAIProviderConfig
from .providers._presets import PRESETS

__all__ = ["interpolate", "load_config", "load_file", "providers_from_env"]

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")
_MAX_LISTED_ERRORS = 5


def interpolate(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of `value`.

    ``$$`` stands for a literal ``$``. A variable that is unset and has no
    default is a `ConfigError` naming it and where it is used.
    """
    if isinstance(value, str):
        if "$" not in value:
            return value

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name, default = match.group(1), match.group(2)
            found = env.get(name)
            if found is not None:
                return found
            if default is not None:
                return default
            raise ConfigError(
                f"environment variable {name} is not set (write ${{{name}:-default}} "
                "to give a default)",
                path=path,
            )

        return _VARIABLE.sub(replace, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
    return value


def _location(loc: tuple[int | str, ...], data: Any) -> str:
    """A dotted path from a pydantic error location, without union tag segments."""
    parts: list[str] = []
    node: Any = data
    for item in loc:
        if isinstance(node, dict) and item in node:
            node = node[item]
            parts.append(str(item))
        elif isinstance(node, list) and isinstance(item, int) and item < len(node):
            node = node[item]
            parts.append(str(item))
        elif isinstance(node, dict) and isinstance(item, str) and node.get("type") == item:
            continue  # the discriminator value pydantic inserts for tagged unions
        else:
            parts.append(str(item))
            node = None
    return ".".join(parts)


def _config_error(exc: ValidationError, data: Any, source: str) -> ConfigError:
    problems = exc.errors(include_url=False)
    lines = []
    for problem in problems[:_MAX_LISTED_ERRORS]:
        where = _location(problem["loc"], data) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{where}: {message}")
    if len(problems) > _MAX_LISTED_ERRORS:
        lines.append(f"... and {len(problems) - _MAX_LISTED_ERRORS} more")
    first = _location(problems[0]["loc"], data)
    prefix = f"invalid configuration{f' in {source}' if source else ''}"
    return ConfigError(f"{prefix}:\n  " + "\n  ".join(lines), path=first)


def load_config(
    data: Mapping[str, Any] | Config, *, env: Mapping[str, str] | None = None, source: str = ""
) -> Config:
    """Validate a config document (after interpolating ``${VAR}``) into a `Config`."""
    if isinstance(data, Config):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"a configuration must be a mapping, got {type(data).__name__}")
    raw = interpolate(dict(data), os.environ if env is None else env)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, raw, source) from exc


def load_file(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from exc
    suffix = file.suffix.lower()
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(
                f"cannot tell the format of {file}: use a .yaml, .yml, .toml or .json file"
            )
    except ConfigError:
        raise
    except Exception as exc:  # the parsers' own error types carry the line and column
        raise ConfigError(f"cannot parse {file}: {exc}") from exc
    if data is None:
        data = {}
    return load_config(data, env=env, source=str(file))


def providers_from_env(env: Mapping[str, str] | None = None) -> dict[str, OpenAIProviderConfig]:
    """Providers whose standard API key variable is set, named after their type."""
    environ = os.environ if env is None else env
    found: dict[str, OpenAIProviderConfig] = {}
    for name, preset in PRESETS.items():
        key = environ.get(preset.key_env) if preset.key_env else None
        if key:
            found[name] = OpenAIProviderConfig.model_validate({"type": name, "api_key": key})
    return found
