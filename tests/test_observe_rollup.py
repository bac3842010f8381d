"""The rollup tables: kept by the store's writes and filled by the migration; every figure
read through them equals the one read from the raw rows (the oracle)."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from conftest import new_store_url
from llmroute._types import TokenUsage
from llmroute.observe import RequestRecord, SqliteStore, open_store
from llmroute.observe.analytics import Filters, query_stats
from llmroute.observe.dialect import LogStore
from llmroute.observe.explore import rollups_cover, series, totals_by
from llmroute.observe.rollup import DIMENSIONS, GRAINS, MEASURES, TOTAL_GRAINS
from llmroute.observe.rollup import MIGRATION as ROLLUP_MIGRATION
from llmroute.observe.sqlite import MIGRATIONS, SCHEMA_VERSION

#: A Monday, midnight UTC: day, hour and minute boundaries fall on round offsets from it.
T0 = 1_700_438_400.0
DAYS = 3


def seeded_records(seed: int = 3, count: int = 3000) -> list[RequestRecord]:
    """Requests over `DAYS` days from `T0`, some exactly on a minute, hour or day boundary
    or a hair either side; costs are multiples of 2**-20, so sums are exact in any order."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        if i % 10 == 0:
            edge = rng.choice([60, 3600, 86400]) * rng.randrange(1, DAYS * 86400 // 3600)
            started = T0 + min(edge, DAYS * 86400 - 1) + rng.choice([0.0, -1e-6, 1e-6, 0.5])
        else:
            started = T0 + rng.uniform(0, DAYS * 86400)
        provider, model = rng.choice([("alpha", "a-1"), ("beta", "b-2"), ("gamma", "g-3")])
        failed = rng.random() < 0.1
        refused = failed and rng.random() < 0.3
        hit = not failed and rng.random() < 0.25
        tin, tout = rng.randrange(1, 3000), rng.randrange(1, 900)
        out.append(
            RequestRecord(
                request_id=f"lr-roll-{i:05d}",
                operation=rng.choice(["chat", "chat", "embeddings"]),
                started_at=started,
                request_model="m",
                route=rng.choice(["chat", "search", None]),
                target=None if refused else f"{provider}/{model}",
                provider=None if refused else provider,
                model=None if refused else model,
                status="error" if failed else "ok",
                latency_s=rng.uniform(0.01, 3),
                usage=None if failed else TokenUsage(tin, tout, tin // 4, tin // 9, tout // 5),
                cost_usd=None if failed or rng.random() < 0.05 else rng.randrange(1, 4000) / 2**20,
                saved_usd=rng.randrange(1, 900) / 2**20 if hit else None,
                cache=None if rng.random() < 0.1 else ("hit" if hit else "miss"),
                limit="rate" if refused else None,
                error_type=rng.choice(["ServerError", "RateLimited"]) if failed else None,
                user=f"user-{rng.randrange(4)}",
                key="app",
                team=rng.choice(["ads", "search"]),
                properties={"feature": rng.choice(["inbox", "reports"])},
            )
        )
    return out


def filled(made: LogStore) -> LogStore:
    """`made` with `seeded_records` written."""
    records = seeded_records()
    rng = random.Random(5)
    i = 0
    while i < len(records):  # batches of every size, and some records written twice
        size = rng.randrange(1, 400)
        made.write(records[i : i + size] + records[max(0, i - 3) : i])  # type: ignore[attr-defined]
        i += size
    made.close()  # type: ignore[attr-defined]
    return made


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LogStore:
    """The seeded store, SQLite then PostgreSQL: every test over it runs over both."""
    folder = tmp_path_factory.mktemp("rollup")
    return filled(open_store(new_store_url(request, request.param, folder)))


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> SqliteStore:
    made = SqliteStore(tmp_path_factory.mktemp("rollup-sqlite") / "log.db")
    filled(made)
    return made


@pytest.fixture(scope="module")
def postgres_store(request: pytest.FixtureRequest) -> LogStore:
    return filled(open_store(new_store_url(request, "postgresql", Path())))


RANGES = [
    (T0, T0 + DAYS * 86400),  # everything, on day boundaries
    (T0 + 0.25, T0 + DAYS * 86400 - 0.75),  # a fraction of a second in from each end
    (T0 + 3599.5, T0 + 86400 + 60.000001),  # an hour and a minute, ragged
    (T0 + 86400 + 61, T0 + 86400 + 179),  # within minutes
    (T0 + 7 * 60 + 13.37, T0 + 2 * 86400 + 5 * 3600 + 41.2),
    (T0 - 86400, T0 + 5 * 86400),  # wider than the data
]
FILTERS = [
    {},
    {"provider": "alpha"},
    {"route": "chat", "status": "ok"},
    {"error_type": "RateLimited"},
    {"cache": "hit", "operation": "chat"},
    {"target": "beta/b-2", "model": "b-2"},
    {"user": "user-1"},  # not a dimension: raw rows
    {"properties": {"feature": "inbox"}},  # ditto
]
WIDTHS = [60, 300, 900, 3600, 3 * 3600, 86400, 7 * 86400, 45, 1.5]


@pytest.mark.parametrize(("since", "until"), RANGES)
@pytest.mark.parametrize("changes", FILTERS, ids=lambda c: ",".join(c) or "none")
def test_series_from_rollups_equals_series_from_rows(
    store: LogStore, since: float, until: float, changes: dict[str, object]
) -> None:
    filters = Filters(since=since, until=until, **changes)  # type: ignore[arg-type]
    for width in WIDTHS:
        origin = since // width * width
        rolled = series(store, filters, origin=origin, width=width)
        raw = series(store, filters, origin=origin, width=width, use_rollups=False)
        assert rolled == raw, width
        assert sum(b.requests for b in raw) > 0 or since > T0 + 86400


@pytest.mark.parametrize(("since", "until"), RANGES)
@pytest.mark.parametrize("by", ["model", "provider", "route", "target", "user"])
def test_totals_from_rollups_equal_totals_from_rows(
    store: LogStore, since: float, until: float, by: str
) -> None:
    for changes in FILTERS[:4]:
        filters = Filters(since=since, until=until, **changes)  # type: ignore[arg-type]
        for order in ("cost_usd", "requests", "errors"):
            rolled = totals_by(store, filters, by=by, order=order, limit=3)
            raw = totals_by(store, filters, by=by, order=order, limit=3, use_rollups=False)
            assert rolled == raw


def test_every_grain_holds_every_request_once(store: LogStore) -> None:
    with store.connect() as conn:
        raw = conn.execute(
            "SELECT COUNT(*), SUM(input_tokens), SUM(cost_usd) FROM requests"
        ).fetchone()
        assert raw[0] == 3000
        for table, grain in GRAINS + TOTAL_GRAINS:
            rolled = conn.execute(
                f"SELECT SUM(requests), SUM(input_tokens), SUM(cost_usd), "
                f"SUM(bucket % {grain}) FROM {table}"
            ).fetchone()
            assert tuple(rolled) == (*raw, 0)


@pytest.mark.parametrize(("since", "until"), RANGES)
def test_postgresql_answers_as_sqlite(
    sqlite_store: SqliteStore, postgres_store: LogStore, since: float, until: float
) -> None:
    """The same questions over both stores, holding the same records, get the same figures
    (costs are multiples of 2**-20: their sums are exact in any order)."""
    for changes in FILTERS:
        filters = Filters(since=since, until=until, **changes)  # type: ignore[arg-type]
        for width in (60, 3600, 45, 1.5):
            origin = since // width * width
            for use_rollups in (True, False):
                lite = series(sqlite_store, filters, origin=origin, width=width,
                              use_rollups=use_rollups)  # fmt: skip
                assert lite == series(postgres_store, filters, origin=origin, width=width,
                                      use_rollups=use_rollups)  # fmt: skip
        for by in ("model", "user", "property.feature", "hour", "day"):
            lite_rows = totals_by(sqlite_store, filters, by=by, order="requests", limit=50)
            assert lite_rows == totals_by(
                postgres_store, filters, by=by, order="requests", limit=50
            )
            lite_report = query_stats(sqlite_store, by=[by, "status"], filters=filters)
            assert lite_report == query_stats(postgres_store, by=[by, "status"], filters=filters)


def test_the_migration_fills_the_rollups_from_the_stored_rows(
    sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    """A store from before the rollups (its tables dropped, its version set back) gains
    them on opening, with the same rows as those the writes kept."""
    step = MIGRATIONS.index(ROLLUP_MIGRATION)
    assert step < SCHEMA_VERSION
    store = sqlite_store
    old = tmp_path / "old.db"
    with store.connect() as conn:
        conn.execute("VACUUM INTO ?", (str(old),))
    with sqlite3.connect(old) as conn:
        for table, _ in GRAINS + TOTAL_GRAINS:
            conn.execute(f"DROP TABLE {table}")
        conn.execute(f"PRAGMA user_version = {step}")
    assert SqliteStore(old).schema_version() == SCHEMA_VERSION
    columns = ", ".join(["bucket", *DIMENSIONS, *MEASURES])
    for table, _ in GRAINS + TOTAL_GRAINS:
        query = f"SELECT {columns} FROM {table} ORDER BY bucket, {', '.join(DIMENSIONS)}"
        with store.connect() as kept, SqliteStore(old).connect() as filled:
            assert kept.execute(query).fetchall() == filled.execute(query).fetchall()


def test_rollups_serve_only_dimension_filters() -> None:
    assert rollups_cover(Filters(since=0, until=1, provider="a", route="r", status="ok"))
    assert not rollups_cover(Filters(user="u"))
    assert not rollups_cover(Filters(team="t"))
    assert not rollups_cover(Filters(key="k"))
    assert not rollups_cover(Filters(experiment="e"))
    assert not rollups_cover(Filters(properties={"feature": "inbox"}))
    assert not rollups_cover(Filters(route=""))  # '' is how a rollup stores a missing route
