"""The rollup tables: kept by the store's writes and filled by the migration; every figure
read through them equals the one read from the raw rows (the oracle). The latency
histograms' oracle is tests/test_observe_histogram.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from _rollup_seed import DAYS, T0, seeded_records, seeded_store, set_back, set_back_postgres
from conftest import new_store_url
from llmroute.observe import PostgresStore, SqliteStore
from llmroute.observe.analytics import Filters, query_stats
from llmroute.observe.dialect import LogStore
from llmroute.observe.explore import rollups_cover, series, totals_by
from llmroute.observe.rollup import DIMENSIONS, GRAINS, MEASURES, TOTAL_GRAINS
from llmroute.observe.rollup import MIGRATION as ROLLUP_MIGRATION
from llmroute.observe.sqlite import MIGRATIONS, SCHEMA_VERSION


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LogStore:
    """The seeded store, SQLite then PostgreSQL: every test over it runs over both."""
    folder = tmp_path_factory.mktemp("rollup")
    return seeded_store(new_store_url(request, request.param, folder))


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> SqliteStore:
    made = seeded_store(tmp_path_factory.mktemp("rollup-sqlite") / "log.db")
    assert isinstance(made, SqliteStore)
    return made


@pytest.fixture(scope="module")
def postgres_store(request: pytest.FixtureRequest) -> LogStore:
    return seeded_store(new_store_url(request, "postgresql", Path()))


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
    set_back(old, step)
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


@pytest.mark.parametrize(("since", "until"), [*RANGES, (None, T0 + 86400), (None, None)])
def test_a_property_filter_reads_the_requests_with_it_in_the_range(
    store: LogStore, since: float | None, until: float | None
) -> None:
    """Through the index on the properties' key, value and start (schema version 9)."""
    filters = Filters(since=since, until=until, properties={"feature": "inbox"})
    expected = sum(
        1
        for r in seeded_records()
        if r.properties.get("feature") == "inbox"
        and (since is None or r.started_at >= since)
        and (until is None or r.started_at < until)
    )
    buckets = series(store, filters, origin=T0 - 86400, width=3600)
    assert sum(b.requests for b in buckets) == expected > 0


_SAME_START = (
    "SELECT COUNT(*), SUM(CASE WHEN p.started_at = r.started_at THEN 1 ELSE 0 END) "
    "FROM properties p JOIN requests r ON r.request_id = p.request_id"
)


def test_the_migration_gives_each_property_its_requests_start(
    sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    old = tmp_path / "v8.db"
    with sqlite_store.connect() as conn:
        conn.execute("VACUUM INTO ?", (str(old),))
    set_back(old, 8)
    assert SqliteStore(old).schema_version() == SCHEMA_VERSION == 9
    with SqliteStore(old).connect() as conn:
        assert tuple(conn.execute(_SAME_START).fetchone()) == (3000, 3000)


def test_postgresql_migration_gives_each_property_its_requests_start(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """PostgreSQL's step 9, on a store set back to version 8."""
    from llmroute.observe.pg_schema import SCHEMA_VERSION as PG_VERSION

    url = new_store_url(request, "postgresql", tmp_path)
    seeded_store(url)
    set_back_postgres(url, 8)
    again = PostgresStore(url)
    assert again.schema_version() == PG_VERSION == SCHEMA_VERSION == 9
    with again.connect() as conn:
        assert tuple(conn.execute(_SAME_START).fetchone()) == (3000, 3000)
    again.close()
