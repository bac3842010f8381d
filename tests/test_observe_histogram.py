"""The rollups' latency histograms: the bins (in SQL and in Python), percentiles read off
summed bins within the bins' relative error of the exact ones over a seeded store (the
oracle), the tables kept by writes and filled by the migration alike."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from _rollup_seed import DAYS, T0, seeded_store, set_back, set_back_postgres
from conftest import new_store_url
from llmroute.observe import PostgresStore, SqliteStore
from llmroute.observe.analytics import Filters, Percentiles, percentile
from llmroute.observe.dialect import POSTGRES, LogStore
from llmroute.observe.histogram import (
    BIN_SQL,
    COUNTS,
    LATENCY,
    LOWEST_S,
    MIGRATION,
    RELATIVE_ERROR,
    TABLES,
    TOP_BIN,
    TOTAL_TABLES,
    TTFT,
    bin_of,
    bin_sql,
    bounds,
    estimate,
    register_ln,
)
from llmroute.observe.latency import latency_report, percentiles, served_by_rollups
from llmroute.observe.rollup import DIMENSIONS
from llmroute.observe.sqlite import MIGRATIONS, SCHEMA_VERSION


@pytest.fixture
def in_memory() -> Iterator[Callable[[], sqlite3.Connection]]:
    """Opens in-memory SQLite databases, closed after the test."""
    opened: list[sqlite3.Connection] = []

    def open_one() -> sqlite3.Connection:
        opened.append(sqlite3.connect(":memory:"))
        return opened[-1]

    yield open_one
    for conn in opened:
        conn.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> LogStore:
    """The seeded store, SQLite then PostgreSQL: the tests over it run over both."""
    folder = tmp_path_factory.mktemp("histogram")
    return seeded_store(new_store_url(request, request.param, folder))


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> SqliteStore:
    made = seeded_store(tmp_path_factory.mktemp("histogram-sqlite") / "log.db")
    assert isinstance(made, SqliteStore)
    return made


def close(binned: float | None, exact: float | None) -> bool:
    """Within the bins' relative error (and half a bin 0 for values under 1 µs)."""
    if binned is None or exact is None:
        return binned is None and exact is None
    return abs(binned - exact) <= RELATIVE_ERROR * (1 + 1e-9) * abs(exact) + LOWEST_S / 2


def all_close(binned: Percentiles, exact: Percentiles) -> bool:
    return all(close(getattr(binned, p), getattr(exact, p)) for p in ("p50", "p90", "p95", "p99"))


# ---------------------------------------------------------------- the bins

EDGES = [0.0, 1e-9, 1e-6 * (1 - 1e-12), 1e-6, 1.5e-6, 1e-3, 0.25, 1.0, 2.0, 60.0, 3600.0,
         1e6, 1e7, 1e12]  # fmt: skip


def test_the_bins_in_sql_and_in_python_agree_and_hold_their_values(
    in_memory: Callable[[], sqlite3.Connection],
) -> None:
    rng = random.Random(1)
    values = EDGES + [rng.lognormvariate(0, 4) for _ in range(20_000)]
    values += [bounds(i)[0] for i in range(1, TOP_BIN + 1)]  # each bin's lower bound
    conn = in_memory()
    for value in values:
        (in_sql,) = conn.execute(f"SELECT {BIN_SQL.format(':v')}", {"v": value}).fetchone()
        assert in_sql == bin_of(value), value
        low, high = bounds(in_sql)
        assert low * (1 - 1e-12) <= value < high * (1 + 1e-12), (value, low, high)
        if 0 < in_sql < TOP_BIN:
            assert abs(estimate(in_sql) - value) <= RELATIVE_ERROR * (1 + 1e-9) * value
    assert (conn.execute(f"SELECT {BIN_SQL.format('NULL')}").fetchone()) == (None,)
    assert bin_of(0.0) == 0 and bin_of(1e12) == TOP_BIN
    assert 0.028 < RELATIVE_ERROR < 0.029
    with pytest.raises(ValueError, match="no bin 481"):
        bounds(TOP_BIN + 1)


def test_the_bins_in_postgresql_are_those_in_sqlite(postgres_url: str) -> None:
    rng = random.Random(1)
    values = EDGES + [rng.lognormvariate(0, 4) for _ in range(20_000)]
    values += [bounds(i)[0] for i in range(1, TOP_BIN + 1)]
    with PostgresStore(postgres_url).connect() as conn:
        rows = conn.execute(
            f"SELECT {bin_sql(POSTGRES, 'v')} FROM unnest(CAST(? AS DOUBLE PRECISION[])) "
            "WITH ORDINALITY AS t(v, n) ORDER BY n",
            [values],
        ).fetchall()
        assert conn.execute(f"SELECT {bin_sql(POSTGRES, 'NULL')}").fetchone() == (None,)
    assert [row[0] for row in rows] == [bin_of(v) for v in values]


def test_python_ln_gives_the_same_bins_where_sqlite_has_no_math_functions(
    in_memory: Callable[[], sqlite3.Connection],
) -> None:
    builtin, fallback = in_memory(), in_memory()
    register_ln(builtin)  # it has ln(): nothing replaced
    register_ln(fallback, force=True)
    rng = random.Random(2)
    sql = f"SELECT {BIN_SQL.format(':v')}, ln(:v)"  # named: Python 3.12 deprecates ?1 with a tuple
    for value in EDGES + [rng.lognormvariate(0, 4) for _ in range(5_000)]:
        assert (
            builtin.execute(sql, {"v": value}).fetchone()
            == fallback.execute(sql, {"v": value}).fetchone()
        )
    assert fallback.execute("SELECT ln(0), ln(-1), ln(NULL)").fetchone() == (None, None, None)


@given(st.lists(st.floats(min_value=1e-6, max_value=1e5), min_size=1, max_size=300))
def test_percentiles_of_bins_are_within_the_relative_error(values: list[float]) -> None:
    counts: dict[int, int] = {}
    for value in values:
        counts[bin_of(value)] = counts.get(bin_of(value), 0) + 1
    ordered = sorted(values)
    assert all_close(percentiles(counts), Percentiles.of(ordered))
    assert percentile(ordered, 50) is not None


def test_percentiles_of_no_values_are_none() -> None:
    assert percentiles({}) == Percentiles() == percentiles({3: 0})


# ---------------------------------------------------------------- over a store

RANGES = [
    (T0, T0 + DAYS * 86400),  # everything, on day boundaries
    (T0 + 0.25, T0 + DAYS * 86400 - 0.75),
    (T0 + 3599.5, T0 + 86400 + 60.000001),
    (T0 + 86400 + 61, T0 + 86400 + 1979),
    (T0 + 7 * 60 + 13.37, T0 + 2 * 86400 + 5 * 3600 + 41.2),
    (T0 - 86400, T0 + 5 * 86400),
]
FILTERS = [
    {},
    {"provider": "alpha"},
    {"route": "chat", "status": "ok"},
    {"cache": "hit", "operation": "chat"},
    {"target": "beta/b-2"},
    {"status": "error"},
]
GROUPINGS = [("provider", "model"), ("route",), ("target", "route")]


@pytest.mark.parametrize(("since", "until"), RANGES)
@pytest.mark.parametrize("changes", FILTERS, ids=lambda c: ",".join(c) or "none")
def test_binned_percentiles_are_within_the_relative_error_of_the_exact_ones(
    store: LogStore, since: float, until: float, changes: dict[str, str]
) -> None:
    filters = Filters(since=since, until=until, **changes)  # type: ignore[arg-type]
    checked = 0
    for by, width in zip(GROUPINGS, [900, 3600, 86400], strict=True):
        origin = since // width * width
        binned = latency_report(store, filters, by=by, origin=origin, width=width)
        exact = latency_report(store, filters, by=by, origin=origin, width=width, exact=True)
        assert (binned.exact, exact.exact) == (False, True)
        assert all_close(binned.latency, exact.latency)
        assert all_close(binned.ttft, exact.ttft)
        keys = [tuple(g[k] for k in by) for g in binned.groups]
        assert keys == [tuple(g[k] for k in by) for g in exact.groups]
        for b, e in zip(binned.groups, exact.groups, strict=True):
            assert (b["requests"], b["errors"]) == (e["requests"], e["errors"])
            assert all_close(b["latency"], e["latency"]) and all_close(b["ttft"], e["ttft"])
        assert [(s.start, s.requests) for s in binned.series] == [
            (s.start, s.requests) for s in exact.series
        ]
        for b, e in zip(binned.series, exact.series, strict=True):
            assert all_close(b.latency, e.latency) and all_close(b.ttft, e.ttft)
            checked += e.latency.p50 is not None
    assert checked > 0 or since > T0 + 86400


def test_what_the_histograms_cannot_serve_reads_the_rows(store: LogStore) -> None:
    everything = {"since": T0, "until": T0 + DAYS * 86400}
    for filters, by, width in [
        (Filters(**everything, user="user-1"), ("provider",), 3600),  # type: ignore[arg-type]
        (Filters(**everything, properties={"feature": "inbox"}), ("provider",), 3600),  # type: ignore[arg-type]
        (Filters(**everything), ("user",), 3600),  # type: ignore[arg-type]
        (Filters(**everything), ("provider",), 1.5),  # type: ignore[arg-type]
        (Filters(), ("provider",), 3600),  # no range
        (Filters(**everything), (), 3600),  # type: ignore[arg-type]  # no groups
    ]:
        assert not served_by_rollups(filters, by=by, origin=0, width=width)
        report = latency_report(store, filters, by=by, origin=0, width=width)
        assert report.exact
    assert served_by_rollups(Filters(**everything), by=("model",), origin=0, width=60)  # type: ignore[arg-type]


def test_every_table_counts_every_latency_once(store: LogStore) -> None:
    counts = " + ".join(COUNTS)
    with store.connect() as conn:
        latencies, ttfts = conn.execute(
            "SELECT COUNT(latency_s), COUNT(CASE WHEN latency_s IS NOT NULL THEN ttft_s END) "
            "FROM requests"
        ).fetchone()
        assert latencies > 2000 and ttfts > 500
        for table, grain in TABLES + TOTAL_TABLES:
            rolled = conn.execute(
                f"SELECT SUM(CASE kind WHEN {LATENCY} THEN {counts} END), "
                f"SUM(CASE kind WHEN {TTFT} THEN {counts} END), SUM(bucket % {grain}), "
                f"MIN(octave), MAX(octave), SUM(CASE WHEN {counts} = 0 THEN 1 ELSE 0 END) "
                f"FROM {table}"
            ).fetchone()
            assert tuple(rolled) == (latencies, ttfts, 0, 0, rolled[4], 0), table
            assert rolled[4] < TOP_BIN // len(COUNTS)


def test_the_migration_fills_the_histograms_from_the_stored_rows(
    sqlite_store: SqliteStore, tmp_path: Path
) -> None:
    """A store of schema version 7 (the rollups without histograms) gains them on opening,
    with the same rows as those the writes kept."""
    store = sqlite_store
    step = MIGRATIONS.index(MIGRATION)
    assert step == 7
    old = tmp_path / "v7.db"
    with store.connect() as conn:
        conn.execute("VACUUM INTO ?", (str(old),))
    set_back(old, step)
    assert SqliteStore(old).schema_version() == SCHEMA_VERSION
    order = ", ".join(["bucket", *DIMENSIONS, "kind", "octave"])
    for table, _ in TABLES + TOTAL_TABLES:
        query = f"SELECT {order}, {', '.join(COUNTS)} FROM {table} ORDER BY {order}"
        with store.connect() as kept, SqliteStore(old).connect() as filled:
            rows = kept.execute(query).fetchall()
            assert rows == filled.execute(query).fetchall()
            assert len(rows) > 100 or table.endswith("day")


def test_a_postgresql_store_of_version_7_gains_the_histograms(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """PostgreSQL's step 8 fills the tables from the rows as its writes keep them."""

    from llmroute.observe.pg_schema import SCHEMA_VERSION as PG_VERSION

    url = new_store_url(request, "postgresql", tmp_path)
    kept = seeded_store(url)
    order = ", ".join(["bucket", *DIMENSIONS, "kind", "octave"])
    queries = [f"SELECT {order}, {', '.join(COUNTS)} FROM {t} ORDER BY {order}"
               for t, _ in TABLES + TOTAL_TABLES]  # fmt: skip
    with kept.connect() as conn:
        written = [conn.execute(q).fetchall() for q in queries]
    set_back_postgres(url, 7)
    again = PostgresStore(url)
    assert again.schema_version() == PG_VERSION == SCHEMA_VERSION
    with again.connect() as conn:
        assert [conn.execute(q).fetchall() for q in queries] == written
    assert sum(len(rows) for rows in written) > 300
