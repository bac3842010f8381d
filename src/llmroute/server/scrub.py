"""What of an upstream's error text the gateway relays to its clients.

A provider's error message can quote what the gateway sent it (an upstream 401
quoting the ``Authorization`` header it received: the operator's provider key),
and a connection error names internal hosts and ports. The gateway serves
tenants who must see neither. `ErrorText` filters every message and attempt
error that came from upstream, by the ``server.upstream_errors`` policy:

- ``scrub`` (default): credentials (the configured provider and gateway keys,
  ``Bearer``/``Basic`` values, ``sk-...``, ``AKIA...``, ``AIza...``,
  ``api_key=...``), URLs, IP addresses and ``host:port`` pairs are replaced by
  ``[redacted]``, ``[url]`` and ``[host]``; the rest of the message stays, so
  clients still learn what went wrong.
- ``generic``: only the kind of failure ("the upstream provider answered with
  an error"), never its text.
- ``pass``: the text as the provider sent it (a gateway whose clients are its
  operators).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Literal

from pydantic import BaseModel, SecretStr

from .._config import Config
from .._config_load import providers_from_env

__all__ = ["ErrorText", "UpstreamErrors", "configured_secrets"]

UpstreamErrors = Literal["scrub", "pass", "generic"]

#: Each pattern and what replaces it, applied in order (credentials before URLs, so a key in
#: a URL's query is gone whichever matches first).
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]+"), r"\1 [redacted]"),
    (re.compile(r"(?i)\b(x-api-key|api[_-]?key|access[_-]?token|key)(\s*[=:]\s*)[^\s&,;'\"]+"),
     r"\1\2[redacted]"),
    (re.compile(r"\bsk-[\w-]{6,}"), "[redacted]"),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "[redacted]"),
    (re.compile(r"\bAIza[\w-]{20,}"), "[redacted]"),
    (re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+"), "[url]"),
    (re.compile(r"\[[0-9a-fA-F:]*:[0-9a-fA-F:]*\](?::\d{1,5})?"), "[host]"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b"), "[host]"),
    (re.compile(r"(?i)\b(?:localhost|(?:[a-z0-9-]+\.)+[a-z0-9-]+):\d{1,5}\b"), "[host]"),
)  # fmt: skip

_GENERIC = "the upstream provider answered with an error"


class ErrorText:
    """Filters upstream error text for clients (see the module docstring).

    Args:
        mode: ``scrub``, ``pass`` or ``generic``.
        secrets: exact strings never to relay (the configured keys); strings
            shorter than 8 characters are ignored, as they would match ordinary words.
    """

    __slots__ = ("_secrets", "mode")

    def __init__(self, mode: UpstreamErrors = "scrub", secrets: Iterable[str] = ()) -> None:
        self.mode = mode
        self._secrets = sorted({s for s in secrets if len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        if self.mode == "pass":
            return text
        if self.mode == "generic":
            return _GENERIC
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


def configured_secrets(config: Config) -> list[str]:
    """Every secret the gateway holds: each provider's credentials (configured, or found in
    the environment) and the gateway keys written in plain text."""
    models: list[BaseModel] = [*config.providers.values(), *providers_from_env(os.environ).values()]
    if config.server is not None:
        models.extend(key for key in config.server.keys if not key.hashed)
    return [secret for model in models for secret in _secret_values(model)]


def _secret_values(model: BaseModel) -> Iterator[str]:
    for name in type(model).model_fields:
        value = getattr(model, name, None)
        if isinstance(value, SecretStr):
            yield value.get_secret_value()
