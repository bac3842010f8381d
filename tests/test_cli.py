"""The ``llmroute`` command: check, schema, --version (``serve``: see test_server_cli.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import llmroute
from llmroute.cli import main
from llmroute.providers import PRESETS

SECRET = "sk-test-do-not-print-0123456789"

VALID_YAML = """\
providers:
  primary:
    type: openai
    api_key: ${CLI_TEST_KEY}
    timeout: 30s
  sim:
    type: mock
    script: [503, ok]
routes:
  chat:
    targets: [primary/gpt-4o-mini, sim/echo-model]
    retry: {attempts: 3, backoff: constant, initial: 500ms}
    timeout: 1m30s
    fallbacks: [backup]
  backup:
    targets:
      - provider: ollama
        model: llama3.2
"""


@pytest.fixture(autouse=True)
def no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider keys or base-URL overrides leak in from the machine running the tests."""
    for preset in PRESETS.values():
        for name in (preset.key_env, preset.base_url_env):
            if name:
                monkeypatch.delenv(name, raising=False)


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- check


def test_check_shows_routes_targets_and_providers_without_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_TEST_KEY", SECRET)
    path = write(tmp_path, "llmroute.yaml", VALID_YAML)
    assert main(["check", path, "--format", "plain"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    for expected in ("chat", "backup", "ordered", "90s", "3 rounds, constant 0.5s",
                     "primary/gpt-4o-mini", "sim/echo-model", "ollama/llama3.2",
                     "https://api.openai.com/v1", "http://localhost:11434/v1", "(simulated)"):  # fmt: skip
        assert expected in out
    assert SECRET not in out
    assert "2 routes" in out


def test_check_shows_key_status_and_where_providers_come_from(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", SECRET)
    text = (
        "providers:\n  selfhosted: {type: together, base_url: 'http://10.0.0.5/v1'}\n"
        "routes:\n  r: {targets: [groq/llama, selfhosted/m]}\n"
    )
    assert main(["check", write(tmp_path, "c.yaml", text), "--format", "plain"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "missing" in lines["selfhosted"]  # its own base_url: a key is optional
    assert "config" in lines["selfhosted"]
    assert "environment" in lines["groq"]
    assert SECRET not in out


def test_check_refuses_a_declared_provider_without_its_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "providers:\n  nokey: {type: together}\nroutes:\n  r: {targets: [nokey/m]}\n"
    assert main(["check", write(tmp_path, "c.yaml", text)]) == 1
    err = capsys.readouterr().err
    assert "TOGETHER_API_KEY" in err
    assert "providers.nokey.api_key" in err


def test_check_draws_rich_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLI_TEST_KEY", SECRET)
    monkeypatch.setenv("COLUMNS", "200")
    path = write(tmp_path, "llmroute.yaml", VALID_YAML)
    assert main(["check", path, "--format", "table"]) == 0
    out = capsys.readouterr().out
    assert "┃ route" in out
    assert "primary/gpt-4o-mini" in out
    assert "[openai]" in out  # printed as text, not swallowed as rich markup
    assert SECRET not in out


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.toml", '[routes.chat]\ntargets = ["mock/m"]\ntimeout = "10s"\n'),
        ("c.json", '{"routes": {"chat": {"targets": [{"provider": "mock", "model": "m"}]}}}'),
    ],
)
def test_check_reads_toml_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str
) -> None:
    assert main(["check", write(tmp_path, name, text)]) == 0
    assert "mock/m" in capsys.readouterr().out


def test_check_invalid_file_exits_1_with_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "routes:\n  chat:\n    targets: [mock/m]\n    timeout: soon\n"
    assert main(["check", write(tmp_path, "bad.yaml", text)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "routes.chat.timeout" in err
    assert "expected a duration" in err
    assert "Traceback" not in err


def test_check_unknown_provider_names_the_file_and_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "bad.yaml", "routes:\n  chat:\n    targets: [nope/m]\n")
    assert main(["check", path]) == 1
    err = capsys.readouterr().err
    assert path in err
    assert "unknown provider 'nope'" in err
    assert "at: routes.chat.targets.0.provider" in err


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "absent.yaml")]) == 1
    err = capsys.readouterr().err
    assert "cannot read config file" in err
    assert "absent.yaml" in err


# ---------------------------------------------------------------- schema


def test_schema_is_json_with_the_top_level_sections(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"providers", "routes"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_schema_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "llmroute.schema.json"
    assert main(["schema", "--output", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert json.loads(target.read_text())["properties"]["routes"]


# ---------------------------------------------------------------- entry point


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"llmroute {llmroute.__version__}"


def test_usage_error_returns_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: llmroute" in capsys.readouterr().err


def test_importing_llmroute_does_not_import_rich() -> None:
    code = "import sys, llmroute, llmroute.cli; sys.exit('rich' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
