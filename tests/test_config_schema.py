"""The exported JSON Schema accepts what the loader accepts, and refuses what it refuses."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

import llmroute

SCHEMA = llmroute.Config.model_json_schema()

GOOD = """
providers:
  sim: {type: mock, latency: 50ms, ttft: {distribution: uniform, min: 10ms, max: 20ms},
        script: [ok, 503, drop, {status: 429, retry_after: 2s}]}
  oai: {type: openai, api_key: sk-x, timeout: 30s, connect_timeout: 2}
routes:
  chat:
    targets: [sim/m, {provider: oai, model: gpt-4o-mini, weight: 2}]
    timeout: 1m30s
    retry: {attempts: 3, backoff: constant, initial: 250ms, max_delay: 4s}
    fallbacks: [backup]
  backup: {targets: [sim/other]}
responses: {store: off, retention: 7d, max_turns: 50, max_entry_size: 4MiB}
"""


def test_a_full_config_validates_against_the_schema_and_the_loader() -> None:
    document = yaml.safe_load(GOOD)
    jsonschema.validate(document, SCHEMA)
    llmroute.Config.model_validate(document)


@pytest.mark.parametrize(
    "document",
    [
        {"routes": {"c": {"targets": ["no-slash"]}}},
        {"routes": {"c": {"targets": ["a/m"], "timeout": "soon"}}},
        {"routes": {"c": {"targets": ["a/m"], "colour": "red"}}},
        {"cache": {"ttl": "soon"}},
        {"responses": {"store": "postgres://db"}},
        {"responses": {"retention": "soon"}},
        {"responses": {"max_turns": 0}},
        {"providers": {"p": {"type": "mock", "script": ["maybe"]}}},
        {"providers": {"p": {"type": "teleport"}}},
    ],
)
def test_schema_refuses_what_the_loader_refuses(document: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)
    with pytest.raises(llmroute.ConfigError):
        llmroute.AsyncRouter(document, env={})
