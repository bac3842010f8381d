"""Config validation, ``${VAR}`` interpolation, file loading and environment detection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

import llmroute
from _helpers import HI
from llmroute._config_load import interpolate, load_config, load_file

pytestmark = pytest.mark.anyio

MOCK = {"m": {"type": "mock"}}


def route(**fields: Any) -> dict[str, Any]:
    """A config with route `c` (-> mock/x) extended by `fields`."""
    return {"routes": {"c": {"targets": ["mock/x"], **fields}}}


async def accepted(r: llmroute.AsyncRouter) -> tuple[str, ...]:
    """The names `model=` accepts, as an unknown model's error lists them."""
    with pytest.raises(llmroute.UnknownModel) as info:
        await r.chat.completions.create(model="not-a-route", messages=HI)
    return info.value.available


def config_error(data: Any, env: dict[str, str] | None = None) -> llmroute.ConfigError:
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.AsyncRouter(data, env=env or {})
    return info.value


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("data", "path", "expected"),
    [
        ({"bogus": 1}, "bogus", "unknown key"),
        (route(bogus=1), "routes.c.bogus", "unknown key"),
        (route(targets=[{"provider": "m", "model": "x", "bogus": 1}]), "routes.c.targets.0.bogus",
         "unknown key"),
        ({"providers": {"o": {"type": "openai", "bogus": 1}}}, "providers.o.bogus", "unknown key"),
        ({"providers": {"m": {"type": "mock", "bogus": 1}}}, "providers.m.bogus", "unknown key"),
        ({"providers": {"m": {"type": "mock", "script": [{"sttus": 500}]}}},
         "providers.m.script.0.sttus", "unknown key"),
        ({"providers": {"m": {"type": "mock", "latency": {"vaue": 1}}}},
         "providers.m.latency.vaue", "unknown key"),
        ({"providers": {"m": {"type": "mock", "latency": {"distribution": "uniform", "min": 2,
                                                          "max": 1}}}},
         "providers.m.latency", "min <= max"),
        ({"providers": {"m": {"type": "mock", "failure_rate": 2}}}, "providers.m.failure_rate",
         "less than or equal to 1"),
        (route(timeout="fast"), "routes.c.timeout", "expected a duration such as 30s"),
        ({"providers": {"m": {"type": "mock", "timeout": "soon"}}}, "providers.m.timeout",
         "expected a duration such as 30s"),
        (route(timeout=0), "routes.c.timeout", "greater than 0"),
        (route(retry={"initial": "-1s"}), "routes.c.retry.initial", "expected a duration"),
        (route(targets=["gpt4"]), "routes.c.targets.0", "expected 'provider/model', got 'gpt4'"),
        (route(targets=["mock/x", "/x"]), "routes.c.targets.1", "expected 'provider/model'"),
        (route(targets=[]), "routes.c.targets", "at least 1 item"),
        (route(retry={"attempts": 0}), "routes.c.retry.attempts", "greater than or equal to 1"),
        (route(retry={"backoff": "linear"}), "routes.c.retry.backoff", "'exponential'"),
        ({"routes": {"a/b": {"targets": ["mock/x"]}}}, "routes", "name 'a/b'"),
        ({"providers": {"a/b": {"type": "mock"}}}, "providers", "contain no '/'"),
        ([("routes", {})], "", "must be a mapping, got list"),
    ],
)  # fmt: skip
def test_invalid_config_names_path_and_expectation(data: Any, path: str, expected: str) -> None:
    error = config_error(data)
    assert error.path == path
    # the line about the bad field names its path and what was expected
    prefix = f"{path}: " if path else ""
    lines = [line.strip() for line in str(error).splitlines()]
    assert [line for line in lines if line.startswith(prefix) and expected in line] != []


def test_unknown_strategy_lists_the_known_ones() -> None:
    error = config_error(route(strategy="fastest"))
    assert error.path == "routes.c.strategy"
    assert "unknown strategy 'fastest'" in str(error)
    assert "latency" in str(error)


def test_unknown_provider_type_lists_known_types() -> None:
    error = config_error({"providers": {"x": {"type": "bedrock-ish"}}})
    assert error.path == "providers.x"
    assert "'bedrock-ish'" in str(error)
    for known in ("'openai'", "'groq'", "'ollama'", "'mock'"):
        assert known in str(error)


@pytest.mark.parametrize(
    ("fallbacks", "expected"),
    [
        (["nowhere"], "unknown route 'nowhere'; routes: c"),
        (["c"], "route 'c' lists itself as a fallback"),
    ],
)
def test_bad_fallbacks(fallbacks: list[str], expected: str) -> None:
    assert expected in str(config_error(route(fallbacks=fallbacks)))


def test_bad_fallback_error_names_its_field() -> None:
    assert config_error(route(fallbacks=["nowhere"])).path.startswith("routes.c.fallbacks")


def test_unknown_key_named_like_the_type_has_no_tag_in_path() -> None:
    assert (
        config_error({"providers": {"m": {"type": "mock", "mock": 1}}}).path == "providers.m.mock"
    )


def test_unknown_key_says_which_keys_are_expected() -> None:
    message = str(config_error({"route": {}}))
    assert "providers" in message
    assert "routes" in message


def test_many_problems_are_listed_and_capped() -> None:
    error = config_error({f"k{i}": i for i in range(7)})
    assert error.path == "k0"
    message = str(error)
    assert [f"k{i}: unknown key" in message for i in range(7)] == [True] * 5 + [False] * 2
    assert "... and 2 more" in message


def test_valid_config_round_trip() -> None:
    config = load_config(
        {
            "providers": {"m": {"type": "mock", "latency": "20ms", "script": ["ok", 503, "drop"]}},
            "routes": {
                "c": {
                    "targets": ["m/x", {"provider": "m", "model": "y", "weight": 2}],
                    "retry": {"attempts": 3, "initial": "100ms", "max_delay": "1m"},
                    "timeout": "1m30s",
                    "fallbacks": ["d"],
                },
                "d": {"targets": ["mock/z"]},
            },
        },
        env={},
    )
    c = config.routes["c"]
    assert [(t.key, t.weight) for t in c.targets] == [("m/x", 1.0), ("m/y", 2.0)]
    assert (c.retry.attempts, c.retry.initial, c.retry.max_delay, c.timeout) == (3, 0.1, 60, 90)
    mock = config.providers["m"]
    assert mock.latency.value == 0.02
    assert [(o.status, o.drop) for o in mock.script] == [(200, False), (503, False), (200, True)]
    assert load_config(config) is config


# ---------------------------------------------------------------- interpolation


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${WHO}", {"WHO": "world"}, "world"),
        ("hello ${WHO}!", {"WHO": "world"}, "hello world!"),
        ("${A}-${B}", {"A": "1", "B": "2"}, "1-2"),
        ("${WHO:-nobody}", {}, "nobody"),
        ("${WHO:-nobody}", {"WHO": "me"}, "me"),
        ("${WHO:-}", {}, ""),
        ("${WHO}", {"WHO": ""}, ""),
        ("cost $$5", {}, "cost $5"),
        ("$${WHO}", {"WHO": "world"}, "${WHO}"),
        ("a $ b and $WHO", {"WHO": "world"}, "a $ b and $WHO"),
        ("no dollars", {}, "no dollars"),
    ],
)
def test_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    config = load_config({"providers": {"m": {"type": "mock", "text": text}}}, env=env)
    assert config.providers["m"].text == expected


def test_interpolation_reaches_nested_values_and_leaves_others() -> None:
    data = {"a": ["${X}", {"b": "${X:-d}", "n": 5}], "k": None, "t": True}
    assert interpolate(data, {"X": "x"}) == {"a": ["x", {"b": "x", "n": 5}], "k": None, "t": True}


def test_default_applies_to_empty_variable() -> None:
    config = load_config(
        {"providers": {"m": {"type": "mock", "text": "${WHO:-x}"}}}, env={"WHO": ""}
    )
    assert config.providers["m"].text == "x"


def test_interpolated_values_are_validated() -> None:
    config = load_config(route(timeout="${T}", targets=["${P:-mock}/x"]), env={"T": "250ms"})
    assert config.routes["c"].timeout == 0.25
    assert config.routes["c"].targets[0].key == "mock/x"


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"providers": {"o": {"type": "openai", "api_key": "${MY_KEY}"}}}, "providers.o.api_key"),
        (route(targets=["mock/x", "${MY_KEY}/y"]), "routes.c.targets.1"),
    ],
)
def test_missing_variable_names_it_and_its_path(data: dict[str, Any], path: str) -> None:
    error = config_error(data)
    assert error.path == path
    assert "environment variable MY_KEY is not set" in str(error)
    assert "${MY_KEY:-default}" in str(error)


def test_interpolation_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMROUTE_TEST_GREETING", "from os.environ")
    config = load_config(
        {"providers": {"m": {"type": "mock", "text": "${LLMROUTE_TEST_GREETING}"}}}
    )
    assert config.providers["m"].text == "from os.environ"


async def test_interpolated_config_drives_the_router() -> None:
    data = {"providers": {"m": {"type": "mock", "text": "${GREETING}"}}, **route(targets=["m/x"])}
    r = llmroute.AsyncRouter(data, env={"GREETING": "interpolated"})
    reply = await r.chat.completions.create(model="c", messages=HI)
    assert reply.choices[0].message.content == "interpolated"


# ---------------------------------------------------------------- files

DOCUMENT = {
    "providers": {"m": {"type": "mock", "text": "${GREETING}", "latency": "1ms"}},
    "routes": {"chat": {"targets": ["m/x"], "timeout": "30s", "retry": {"attempts": 1}}},
}
TOML = """
[providers.m]
type = "mock"
text = "${GREETING}"
latency = "1ms"

[routes.chat]
targets = ["m/x"]
timeout = "30s"
retry = { attempts = 1 }
"""
FILES = {
    "config.yaml": yaml.safe_dump(DOCUMENT),
    "config.yml": yaml.safe_dump(DOCUMENT),
    "CONFIG.YAML": yaml.safe_dump(DOCUMENT),
    "config.toml": TOML,
    "config.json": json.dumps(DOCUMENT),
}
ENV = {"GREETING": "from a file"}


@pytest.mark.parametrize("name", FILES)
def test_load_file_formats(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(FILES[name], encoding="utf-8")
    config = load_file(path, env=ENV)
    assert config == load_config(DOCUMENT, env=ENV)
    assert config.providers["m"].text == "from a file"
    assert config.routes["chat"].timeout == 30.0


@pytest.mark.parametrize("name", ["config.yaml", "config.toml", "config.json"])
async def test_async_router_from_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(FILES[name], encoding="utf-8")
    async with llmroute.AsyncRouter.from_file(path, env=ENV) as r:
        assert await accepted(r) == ("chat", "m/*")
        reply = await r.chat.completions.create(model="chat", messages=HI)
    assert reply.choices[0].message.content == "from a file"


def test_router_from_file(tmp_path: Path) -> None:
    path = tmp_path / "llmroute.yaml"
    path.write_text(FILES["config.yaml"], encoding="utf-8")
    with llmroute.Router.from_file(str(path), env=ENV) as r:
        reply = r.chat.completions.create(model="chat", messages=HI)
        assert r.config.routes["chat"].retry.attempts == 1
    assert reply.choices[0].message.content == "from a file"


def test_empty_yaml_file_is_an_empty_config(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n", encoding="utf-8")
    config = load_file(path, env={})
    assert (config.providers, config.routes) == ({}, {})


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("config.ini", "[routes]\n", "cannot tell the format"),
        ("config", "routes: {}\n", "cannot tell the format"),
        ("config.yaml", "routes: [unclosed\n", "cannot parse"),
        ("config.yaml", "routes:\n  c: {targets: [mock/x]\n", "cannot parse"),
        ("config.toml", "[routes\n", "cannot parse"),
        ("config.json", "{routes: 1}", "cannot parse"),
        ("config.yaml", "- a\n- b\n", "must be a mapping, got list"),
    ],
)
def test_bad_files(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(llmroute.ConfigError, match=expected) as info:
        llmroute.Router.from_file(path, env={})
    if expected == "cannot parse":
        assert str(path) in str(info.value)
        assert info.value.__cause__ is not None


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(llmroute.ConfigError, match="cannot read config file"):
        load_file(tmp_path / "absent.yaml")


def test_file_validation_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("routes:\n  c:\n    targets: [mock/x]\n    timeout: fast\n", encoding="utf-8")
    with pytest.raises(llmroute.ConfigError) as info:
        llmroute.AsyncRouter.from_file(path, env={})
    assert info.value.path == "routes.c.timeout"
    assert f"invalid configuration in {path}" in str(info.value)


# ---------------------------------------------------------------- environment and names


async def test_zero_config_detects_providers_from_env() -> None:
    env = {"OPENAI_API_KEY": "sk-x", "GROQ_API_KEY": "g", "MISTRAL_API_KEY": ""}
    async with llmroute.AsyncRouter(env=env) as r:
        assert await accepted(r) == ("groq/*", "openai/*")
    async with llmroute.AsyncRouter(env={}) as empty:
        assert await accepted(empty) == ()


async def test_models_lists_routes_then_providers() -> None:
    data = {"providers": MOCK, "routes": {"b": {"targets": ["m/x"]}, "a": {"targets": ["m/y"]}}}
    async with llmroute.AsyncRouter(data, env={"OPENAI_API_KEY": "sk-x"}) as r:
        assert await accepted(r) == ("a", "b", "m/*", "openai/*")


def test_route_to_unconfigured_keyed_preset() -> None:
    error = config_error({"routes": {"c": {"targets": ["mock/x", "groq/llama"]}}})
    assert error.path == "routes.c.targets.1.provider"
    assert "GROQ_API_KEY" in str(error)


async def test_route_to_configured_keyed_preset_and_keyless_preset() -> None:
    data = {"routes": {"c": {"targets": ["groq/llama", "ollama/llama3"]}}}
    async with llmroute.AsyncRouter(data, env={"GROQ_API_KEY": "g"}) as r:
        assert await accepted(r) == ("c", "groq/*", "ollama/*")


def test_route_to_unknown_provider_lists_configured_ones() -> None:
    error = config_error({"providers": MOCK, "routes": {"c": {"targets": ["nowhere/x"]}}})
    assert error.path == "routes.c.targets.0.provider"
    assert "unknown provider 'nowhere'; configured providers: m" in str(error)


def test_transports_for_unknown_providers() -> None:
    with pytest.raises(llmroute.ConfigError, match="transports given for unknown providers: zz"):
        llmroute.AsyncRouter({}, transports={"zz": object()}, env={})


@pytest.mark.parametrize(
    ("model", "expected"),
    [("nope", "Available: c, m/*"), ("groq/llama", "GROQ_API_KEY"), ("nowhere/x", "nowhere")],
)
async def test_unknown_model(model: str, expected: str) -> None:
    data = {"providers": MOCK, "routes": {"c": {"targets": ["m/x"]}}}
    r = llmroute.AsyncRouter(data, env={})
    with pytest.raises(llmroute.UnknownModel) as info:
        await r.chat.completions.create(model=model, messages=HI)
    assert isinstance(info.value, llmroute.RequestError)
    assert (info.value.model, info.value.available, info.value.param) == (
        model,
        ("c", "m/*"),
        "model",
    )
    assert expected in str(info.value)


# ---------------------------------------------------------------- state (shared health)


def test_state_takes_a_url_or_names_a_section_with_redis() -> None:
    base = {"providers": {"a": {"type": "mock"}}}
    config = load_config({**base, "state": "redis://127.0.0.1:6379/2"}, env={})
    assert config.state is not None and config.state.backend == "redis://127.0.0.1:6379/2"
    assert config.state.prefix == "llmroute:state" and config.state.poll_interval == 5.0
    limits = {"backend": "redis://limits:6379/0", "rules": []}
    config = load_config({**base, "rate_limits": limits, "state": {"backend": "rate_limits"}},
                         env={})  # fmt: skip
    assert config.state is not None and config.state.backend == "redis://limits:6379/0"


@pytest.mark.parametrize(
    ("state", "extra", "message"),
    [
        ("memory://", {}, "shared state needs Redis"),
        ({"backend": "budgets"}, {}, "which is not configured"),
        ({"backend": "cache"}, {"cache": {"backend": "memory://"}}, "which uses memory://"),
        ({"backend": "redis://h/0", "prefix": "a{b}"}, {}, "prefix"),
        ({"backend": "redis://h/0", "poll": "1s"}, {}, "poll"),
    ],
)
def test_state_refuses_what_cannot_be_shared(state: Any, extra: Any, message: str) -> None:
    with pytest.raises(llmroute.ConfigError, match=message):
        load_config({"providers": {"a": {"type": "mock"}}, "state": state, **extra}, env={})
