"""Values clients and upstreams chose are escaped where they are shown (issue 15, finding 15):
in the gateway's log lines and in ``llmroute stats`` tables."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmroute import TokenUsage
from llmroute._text import printable
from llmroute.cli import main
from llmroute.observe import AttemptRecord, RequestRecord, SqliteStore

EVIL = "ann\x1b[31m\nINFO: forged line\u2028\x85"


def test_printable_escapes_what_a_terminal_or_log_reader_acts_on() -> None:
    assert printable(EVIL) == "ann\\x1b[31m\\x0aINFO: forged line\\u2028\\x85"
    assert printable("modèle é — ok [bold]") == "modèle é — ok [bold]"


@given(st.text())
def test_printable_leaves_no_control_character(text: str) -> None:
    shown = printable(text)
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029" for c in shown)
    if text.isprintable():
        assert shown == text


def test_stats_tables_escape_stored_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.write([
        RequestRecord(
            request_id="r1", operation="chat", started_at=1_700_000_000.0, request_model="chat",
            ended_at=1_700_000_000.5, route="chat", target="p/m", provider="p", model="m",
            status="ok", latency_s=0.5, usage=TokenUsage(10, 5), cost_usd=0.001, user=EVIL,
            attempts=[AttemptRecord("p/m", "p", "m", "first", latency_s=0.5)],
        )
    ])  # fmt: skip
    store.close()
    assert main(["stats", str(tmp_path / "s.db"), "--by", "user", "--format", "plain"]) == 0
    out = capsys.readouterr().out
    assert "ann\\x1b[31m\\x0aINFO: forged line" in out
    assert "\x1b" not in out and "\u2028" not in out
    assert not any(line.startswith("INFO: forged") for line in out.splitlines())


def test_the_gateway_log_escapes_client_values_but_keeps_its_own_lines() -> None:
    script = textwrap.dedent("""
        import logging
        from llmroute.server.run import setup_logging
        setup_logging()
        log = logging.getLogger("llmroute.server")
        log.warning("%s %s -> %d: %s", "POST", "/v1/x\\nINFO: forged", 502, "up\\x1b[2J")
        log.info("first line\\nsecond line")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stderr.splitlines()
    assert lines[0] == "WARNING:  POST /v1/x\\x0aINFO: forged -> 502: up\\x1b[2J"
    assert lines[1:] == ["INFO:     first line", "second line"]
