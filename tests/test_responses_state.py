"""The Responses API's conversation state: the `responses` section of the configuration."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

import llmroute

# ---------------------------------------------------------------- configuration


def test_the_responses_section_defaults() -> None:
    config = llmroute.Config().responses
    assert config.store == "memory"
    assert config.retention == 30 * 86_400
    assert (config.max_responses, config.max_turns) == (10_000, 100)


@pytest.mark.parametrize(
    ("text", "store"),
    [
        ("store: off", "off"),
        ("store: null", "off"),
        ("store: memory", "memory"),
        ("store: redis://localhost:6379/2", "redis://localhost:6379/2"),
        ("store: rediss://h:6380", "rediss://h:6380"),
        ("store: unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("store: sqlite:///state.db", "sqlite:///state.db"),
    ],
)
def test_the_store_is_named_by_url(text: str, store: str) -> None:
    document = {"responses": yaml.safe_load(text)}
    config = llmroute.Config.model_validate(document)
    assert config.responses.store == store
    jsonschema.validate(document, llmroute.Config.model_json_schema())


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ({"store": "memory://"}, "responses.store"),
        ({"store": "postgres://db"}, "responses.store"),
        ({"store": "sqlite:///"}, "responses.store"),
        ({"store": True}, "responses.store"),
        ({"retention": "forever"}, "responses.retention"),
        ({"retention": 0}, "responses.retention"),
        ({"max_turns": 0}, "responses.max_turns"),
        ({"max_responses": 0}, "responses.max_responses"),
        ({"max_entry_size": "lots"}, "responses.max_entry_size"),
        ({"colour": "red"}, "responses.colour"),
    ],
)
def test_a_bad_responses_section_names_the_field(section: dict[str, Any], path: str) -> None:
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.AsyncRouter({"responses": section}, env={})
    assert info.value.path == path


def test_durations_and_sizes_are_parsed() -> None:
    config = llmroute.Config.model_validate(
        {"responses": {"retention": "7d", "timeout": "500ms", "max_entry_size": "1MiB"}}
    ).responses
    assert (config.retention, config.timeout, config.max_entry_size) == (604_800, 0.5, 1_048_576)
