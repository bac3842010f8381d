"""Public names kept for code written against earlier releases (the restructure added,
never removed: issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from _helpers import HI
from llmroute import AsyncRouter
from llmroute.observe.analytics import make_filters

pytestmark = pytest.mark.anyio


async def test_recorder_query_answers_as_analytics(tmp_path: Path) -> None:
    config = {
        "routes": {"chat": {"targets": ["mock/m"]}},
        "logging": {"store": f"sqlite:///{tmp_path / 'log.db'}"},
    }
    async with AsyncRouter(config, env={}) as router:
        for _ in range(3):
            await router.chat.completions.create(model="chat", messages=HI)
        expected = await router.analytics(by="provider")  # flushes the log first
        found = router.recorder_query(by=["provider"], filters=make_filters())
    assert found.to_dict() == expected.to_dict()
    assert found.total.requests == 3
