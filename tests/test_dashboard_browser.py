"""The dashboard page in a real headless Chromium, over a store seeded with known data.

Skipped with the reason when no chromium is installed; ``LLMROUTE_REQUIRE_BROWSER=1``
(set by .ci/run) makes that a failure. Screenshots go to ``LLMROUTE_SCREENSHOTS``
when it names a folder (docs/dashboard.md shows the committed ones).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from _browser import Page, browser, require_chromium
from _dashboard_seed import EXPERIMENT, FAILOVER_ID, seed, thumbs_up
from _dashboard_server import dashboard_command
from _gateway import running_gateway
from _helpers import ask
from llmroute import AsyncRouter, LocalRateLimitExceeded
from llmroute.observe import RequestRecord

pytestmark = pytest.mark.timeout(120)


def text(page: Page, selector: str) -> str:
    return str(page.evaluate(f"document.querySelector({json.dumps(selector)}).textContent"))


def loaded(page: Page, after: int) -> None:
    """Wait until the page has finished a refresh more than `after` times."""
    page.wait_for(f"document.body && Number(document.body.dataset.loaded || 0) > {after}")


def shoot(page: Page, name: str, **size: Any) -> None:
    folder = os.environ.get("LLMROUTE_SCREENSHOTS")
    if folder:
        page.screenshot(Path(folder) / name, **size)


def test_the_page_shows_the_seeded_figures_filters_and_opens_a_request(tmp_path: Path) -> None:
    require_chromium()
    path = tmp_path / "log.db"
    records: list[RequestRecord] = [
        r for r in seed(path) if r.started_at >= time.time() - 86400 + 60
    ]
    with dashboard_command(path) as (root, _), browser() as page:
        began = time.monotonic()
        page.goto(f"{root}/dashboard")
        loaded(page, 0)
        interactive = time.monotonic() - began
        assert interactive < 10, interactive

        # the overview's tiles and charts show the seeded figures
        assert text(page, "#total-requests") == str(len(records)) == "39"
        cost = sum(r.cost_usd or 0 for r in records)
        assert text(page, "#total-cost") == f"${cost:.4f}"
        errors = sum(r.status == "error" for r in records)
        assert text(page, "#total-error-rate") == f"{100 * errors / len(records):.2f}%"
        bars = page.evaluate("document.querySelectorAll('#chart-requests rect.s0').length")
        assert bars >= 10  # a bar per 15-minute bucket with requests
        drawn = page.evaluate(
            "[...document.querySelectorAll('#chart-requests rect.s0 title')]"
            ".reduce((n, t) => n + Number(t.textContent.split(': ')[1].replace(/,/g, '')), 0)"
        )
        assert drawn == len(records)
        # the cost table, by model: both models, the larger first
        models = page.evaluate(
            "[...document.querySelectorAll('#cost-table tbody tr')].map(r => r.cells[0].textContent)"
        )
        by_model: dict[str, float] = {}
        for r in records:  # a refused request has no model: "(none)"
            name = r.model or "(none)"
            by_model[name] = by_model.get(name, 0.0) + (r.cost_usd or 0.0)
        assert models == sorted(by_model, key=lambda m: -by_model[m])
        refusals = page.evaluate(
            "[...document.querySelectorAll('#errors-requests tbody tr')].map(r => r.cells[1].textContent)"
        )
        assert "BudgetExceeded" in refusals
        # latency per provider and model, read off the rollups' histograms, and says so
        assert "within 2.89% of the exact value" in text(page, "#latency-method")
        providers = page.evaluate(
            "[...document.querySelectorAll('#latency-table tbody tr')].map(r => r.cells[0].textContent)"
        )
        assert sorted(providers) == ["-", "alpha", "beta"]  # the refusal has no provider
        # the experiment: each variant's requests and feedback, the comparisons' sentences
        assert text(page, "#experiments article.experiment h3").startswith(EXPERIMENT)
        variants = page.evaluate(
            "[...document.querySelectorAll('#experiment-0-variants tbody tr')]"
            ".map(r => [r.cells[0].textContent, r.cells[1].textContent, r.cells[7].textContent])"
        )
        given = {p: [thumbs_up(i) for i in range(p, 36, 2) if thumbs_up(i) is not None]
                 for p in (0, 1)}  # fmt: skip
        assert variants == [
            [name, "18", f"thumbs_up {100 * sum(g) / len(g):.1f}% (n={len(g)})"]
            for name, g in (("control", given[0]), ("friendly", given[1]))
        ]
        metrics = page.evaluate(
            "[...document.querySelectorAll('#experiment-0-comparisons tbody tr')]"
            ".map(r => r.cells[1].textContent)"
        )
        assert {"error_rate", "latency_p50", "thumbs_up"} <= set(metrics)
        sentences = page.evaluate(
            "[...document.querySelectorAll('#experiments .sentences li')].map(l => l.textContent)"
        )
        assert len(sentences) == len(metrics) and all("friendly" in t for t in sentences)
        shoot(page, "dashboard-overview.png")

        # a filter changes the figures
        page.evaluate(
            "document.querySelector('input[name=provider]').value = 'beta';"
            "document.querySelector('#controls button[type=submit]').click()"
        )
        loaded(page, 1)
        beta = sum(r.provider == "beta" for r in records)
        assert text(page, "#total-requests") == str(beta)
        page.evaluate(
            "document.querySelector('input[name=provider]').value = '';"
            "document.querySelector('#controls button[type=submit]').click()"
        )
        loaded(page, 2)

        # the request browser: search, open a request, its attempts on a timeline
        page.evaluate(
            f"document.getElementById('search').value = {json.dumps(FAILOVER_ID)};"
            "document.querySelector('#search-form button[type=submit]').click()"
        )
        page.wait_for("document.querySelectorAll('#requests-table tbody tr').length === 1")
        page.evaluate("document.querySelector('#requests-table tbody tr').click()")
        page.wait_for("!document.getElementById('request-detail').hidden")
        assert text(page, "#detail-id") == FAILOVER_ID
        attempts = page.evaluate(
            "[...document.querySelectorAll('#attempts-table tbody tr')]"
            ".map(r => [r.cells[1].textContent, r.cells[2].textContent, r.cells[3].textContent])"
        )
        assert attempts == [["alpha/a-1", "first", "error"], ["beta/b-2", "fallback", "ok"]]
        bars = page.evaluate(
            "[...document.querySelectorAll('#attempts-timeline rect.attempt')]"
            ".map(r => r.getAttribute('class'))"
        )
        assert bars == ["attempt error", "attempt ok"]
        shoot(page, "dashboard-phone.png", width=390, height=2400)
        assert page.problems == []


@pytest.mark.anyio
async def test_the_live_health_view_follows_the_router(tmp_path: Path) -> None:
    """Served by the gateway: the live targets show, and a target's cooldown appears on the
    next refresh."""
    require_chromium()
    path = tmp_path / "log.db"
    seed(path)
    config: dict[str, Any] = {
        "providers": {"alpha": {"type": "mock"}, "beta": {"type": "mock"}},
        "routes": {"chat": {"targets": ["alpha/a-1", "beta/b-2"]}},
        "logging": {"store": f"sqlite:///{path}"},
        "rate_limits": [{"per": "global", "requests": "2/min"}],
    }
    router = AsyncRouter(config)
    # one process, configured as one of two workers: the page says whose figures it shows
    async with running_gateway({}, router=router, server={"workers": 2}) as gateway:

        def drive(page: Page, step: str) -> Any:
            if step == "load":
                page.goto(f"{gateway.root}/dashboard")
                loaded(page, 0)
                return page.evaluate(
                    "[!document.getElementById('health').hidden,"
                    " [...document.querySelectorAll('#health-table tbody tr')]"
                    ".map(r => [r.cells[0].textContent, r.cells[1].textContent, r.cells[3].textContent]),"
                    " document.getElementById('health-worker').textContent]"
                )
            page.evaluate("document.querySelector('#controls button[type=submit]').click()")
            loaded(page, 1)
            return page.evaluate(
                "[[...document.querySelectorAll('#health-table tbody tr')]"
                ".map(r => [r.cells[0].textContent, r.cells[3].textContent]),"
                " [...document.querySelectorAll('#limits-table tbody tr')]"
                ".map(r => [...r.cells].slice(0, 4).map(c => c.textContent))]"
            )

        with browser() as page:
            shown, rows, worker = await asyncio.to_thread(drive, page, "load")
            assert shown is True
            assert worker.startswith(f"Worker process {os.getpid()}, one of 2:")
            assert rows == [["alpha/a-1", "closed", "-"], ["beta/b-2", "closed", "-"]]
            router.cool_down("alpha/a-1", 60, "maintenance")
            outcomes = []
            for _ in range(3):  # the rule lets 2 a minute through
                try:
                    await ask(router)
                    outcomes.append("ok")
                except LocalRateLimitExceeded:
                    outcomes.append("refused")
            assert outcomes == ["ok", "ok", "refused"]
            rows, limits = await asyncio.to_thread(drive, page, "refresh")
            assert limits == [
                ["rate limits", "2", "1", "33.3%"],
                ["budgets", "not configured", "-", "-"],
            ]
            assert rows[0][0] == "alpha/a-1" and rows[0][1].endswith(" s")
            assert rows[1] == ["beta/b-2", "-"]
            await asyncio.to_thread(shoot, page, "dashboard-live.png", height=820, whole=False)
            assert page.problems == []
