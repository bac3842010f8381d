"""Loading a configuration: files (YAML, TOML, JSON), dicts, ``${VAR}`` interpolation, environment detection."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from ._config import Config
from ._errors import ConfigError
from .experiments.config import check_references as check_experiments
from .providers import PROVIDERS, ProviderConfigBase, provider_types

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
            if found or (found is not None and default is None):
                return found
            if default is not None:
                return default  # unset or empty, as in POSIX shells
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


def _has_child(node: Any, item: int | str) -> bool:
    if isinstance(node, dict):
        return item in node
    return isinstance(node, list) and isinstance(item, int) and item < len(node)


def _location(loc: tuple[int | str, ...], data: Any) -> str:
    """A dotted path from a pydantic error location, without union tag segments."""
    parts: list[str] = []
    node: Any = data
    tagged = False
    for item in loc:
        if (
            isinstance(node, dict)
            and isinstance(item, str)
            and node.get("type") == item
            and (not tagged)
        ):
            tagged = True  # the discriminator value pydantic inserts for a tagged union
            continue
        if _has_child(node, item):
            node = node[item]
            parts.append(str(item))
            tagged = False
        else:
            parts.append(str(item))
            node = None
    return ".".join(parts)


def _model_at(loc: tuple[int | str, ...], data: Any) -> type[BaseModel] | None:
    """The config model at `loc` (a pydantic error location), if one is there."""
    current: Any = Config
    node: Any = data
    for item in loc:
        current = _strip(current)
        if get_origin(current) in (Union, UnionType):
            # a tagged union: pydantic's location names the member by its tag
            current = _provider_model(item)
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(item))
            current = field.annotation if field is not None else None
        elif get_origin(current) in (dict, list):
            current = get_args(current)[-1]
        else:
            return None
        node = node[item] if _has_child(node, item) else None
    current = _strip(current)
    if get_origin(current) in (Union, UnionType) and isinstance(node, dict):
        current = _provider_model(node.get("type"))
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _strip(annotation: Any) -> Any:
    """`annotation` without `Annotated` and without an optional `None`."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
            continue
        if origin in (Union, UnionType):
            members = [a for a in get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _provider_model(type_name: Any) -> type[BaseModel] | None:
    spec = PROVIDERS.get(type_name) if isinstance(type_name, str) else None
    return spec.config if spec is not None else None


def _allowed_keys(loc: tuple[int | str, ...], data: Any) -> list[str]:
    model = _model_at(loc, data)
    return sorted(model.model_fields) if model is not None else []


def _config_error(exc: ValidationError, data: Any, source: str) -> ConfigError:
    problems = exc.errors(include_url=False)
    lines = []
    for problem in problems[:_MAX_LISTED_ERRORS]:
        where = _location(problem["loc"], data) or "(top level)"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            allowed = _allowed_keys(problem["loc"][:-1], data)
            message = (
                f"unknown key; expected one of: {', '.join(allowed)}" if allowed else "unknown key"
            )
        elif problem["type"] == "union_tag_not_found":
            message = f"missing `type`; expected one of: {', '.join(provider_types())}"
        lines.append(f"{where}: {message}")
    if len(problems) > _MAX_LISTED_ERRORS:
        lines.append(f"... and {len(problems) - _MAX_LISTED_ERRORS} more")
    first = _location(problems[0]["loc"], data)
    message = f"invalid configuration{f' in {source}' if source else ''}"
    return ConfigError(message, path=first, problems=lines)


def load_config(
    data: Mapping[str, Any] | Config, *, env: Mapping[str, str] | None = None, source: str = ""
) -> Config:
    """Validate a config document (after interpolating ``${VAR}``) into a `Config`."""
    if isinstance(data, Config):
        check_references(data)
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"a configuration must be a mapping, got {type(data).__name__}")
    raw = interpolate(dict(data), os.environ if env is None else env)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, raw, source) from exc
    check_references(config)
    return config


def check_references(config: Config) -> None:
    """Check that every fallback names another existing route, and what experiments name
    (their route, their variants' routes and prompt templates)."""
    for name, route in config.routes.items():
        for i, fallback in enumerate(route.fallbacks):
            path = f"routes.{name}.fallbacks.{i}"
            if fallback == name:
                raise ConfigError(f"route {name!r} lists itself as a fallback", path=path)
            if fallback not in config.routes:
                known = ", ".join(sorted(config.routes)) or "(none)"
                raise ConfigError(f"unknown route {fallback!r}; routes: {known}", path=path)
    store = config.logging.store if config.logging is not None else None
    check_experiments(config.experiments, config.routes, config.prompts, store=store)


def _parse(file: Path, text: str) -> Any:
    """The document in `text`, by the file's extension; parse errors name line and column."""
    suffix = file.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse {file}: {exc}") from exc
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"cannot parse {file}: {exc}") from exc
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"cannot parse {file}: {exc}") from exc
    raise ConfigError(f"cannot tell the format of {file}: use a .yaml, .yml, .toml or .json file")


def load_file(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a YAML (``.yaml``/``.yml``), TOML (``.toml``) or JSON config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"cannot read config file {file}: {reason}") from exc
    data = _parse(file, text)
    if data is None:
        data = {}
    return load_config(data, env=env, source=str(file))


def env_hint(type_name: str) -> str | None:
    """The environment variables that configure a provider type without a config, if any."""
    spec = PROVIDERS.get(type_name)
    return spec.env_hint if spec is not None else None


def with_env_defaults(
    name: str, config: ProviderConfigBase, env: Mapping[str, str]
) -> ProviderConfigBase:
    """A provider config with its unset keys (API key, endpoint...) filled from the environment."""
    return config.with_env(name, env)


def providers_from_env(env: Mapping[str, str] | None = None) -> dict[str, ProviderConfigBase]:
    """Providers whose standard API key variables are set, named after their type."""
    environ = os.environ if env is None else env
    found: dict[str, ProviderConfigBase] = {}
    for type_name, spec in PROVIDERS.items():
        detected = spec.config.from_env(type_name, environ)
        if detected is not None:
            found[type_name] = detected
    return found
