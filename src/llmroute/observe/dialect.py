"""One query layer over two stores: the SQL differences between SQLite and PostgreSQL.

The analytics, the explorer, the rollups and the experiment reports write
their SQL once, in the subset both databases read alike (``COALESCE``,
``CASE``, ``CAST(... AS BIGINT)``, ``ON CONFLICT (...) DO UPDATE``, ``?``
placeholders, ``GROUP BY`` positions), and ask the store's `Dialect` for the
few things that differ: turning seconds into an integer (SQLite's ``CAST``
truncates, PostgreSQL's rounds), formatting an hour or a day, a
case-insensitive ``LIKE``, the column types of a new table, the smaller of
two values, and the placeholders themselves (the PostgreSQL connection
rewrites ``?`` as ``%s``; see `PostgresDialect.sql`).

`LogStore` is what those readers need of a store: a dialect, `connect()` for
reading (a DB-API-shaped connection whose ``execute`` takes ``?``
placeholders), whether anything was ever stored, and an experiment's stop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from .._errors import ConfigError
from .feedback import ExperimentStop, Feedback

__all__ = [
    "SQLITE",
    "POSTGRES",
    "Connection",
    "Cursor",
    "Dialect",
    "LogStore",
    "PostgresDialect",
    "SqliteDialect",
    "StoreUnavailable",
    "count_if",
    "total",
]


class Cursor(Protocol):
    """The rows of one statement (``sqlite3.Cursor`` and psycopg's cursor both are)."""

    @property
    def description(self) -> Any:
        """Per column, a sequence whose first item is its name."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """Every row left."""
        ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection whose ``execute`` takes SQL with ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor:
        """Run one statement."""
        ...


class LogStore(Protocol):
    """A request log the query layer reads: `SqliteStore` or `PostgresStore`."""

    @property
    def dialect(self) -> Dialect:
        """How this store's SQL differs."""
        ...

    def connect(self, *, read_only: bool = False) -> AbstractContextManager[Connection]:
        """A connection for reading (the schema migrated first); `ConfigError` when there
        is no store to read. A `read_only` one's reads share one snapshot."""
        ...

    def exists(self) -> bool:
        """Whether anything may have been stored (a SQLite file that does not exist yet has
        nothing to read)."""
        ...

    def experiment_stop(self, experiment: str) -> ExperimentStop | None:
        """When and why adaptive experiment `experiment` stopped (None: it has not)."""
        ...

    def stop_experiment(self, stop: ExperimentStop) -> ExperimentStop:
        """Store `stop` unless one is stored already; the stop stored."""
        ...

    def add_feedback(self, feedback: Feedback, *, scope: str | None = None) -> bool:
        """Store `feedback` if what it is about is recorded; whether it was."""
        ...


class StoreUnavailable(ConfigError):
    """The store's server cannot be reached (a PostgreSQL store: refused, down, or the
    connection lost during a query). Readers that can go on without the store (adaptive
    experiments' lookups) catch it with SQLite's own errors; the dashboard answers 503."""


def total(expr: str) -> str:
    """The sum of `expr` over a group, 0 when every value is NULL (SQLite's ``TOTAL``)."""
    return f"COALESCE(SUM({expr}), 0)"


def count_if(condition: str) -> str:
    """How many rows of a group meet `condition` (an integer in both databases)."""
    return f"CAST(COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0) AS BIGINT)"


class Dialect(ABC):
    """What one database spells its own way. Subclasses set the class attributes."""

    #: ``sqlite`` or ``postgresql``.
    name: str = ""
    #: The column types of a new table: a 64-bit integer and a double.
    integer_type: str = "INTEGER"
    real_type: str = "REAL"
    #: What follows a keyed table's definition (SQLite: ``WITHOUT ROWID``).
    keyed_table_suffix: str = ""
    #: A ``LIKE`` that ignores ASCII case.
    like: str = "LIKE"

    @abstractmethod
    def integer(self, expr: str) -> str:
        """`expr` (a non-negative number of seconds or buckets) truncated to an integer."""

    @abstractmethod
    def hour(self, expr: str) -> str:
        """The UTC hour of `expr` (Unix seconds) as ``YYYY-MM-DDTHH:00Z``, from its whole
        second (as the rollups bucket it; SQLite's ``strftime`` would round the
        milliseconds, moving a request a microsecond before the hour into the next)."""

    @abstractmethod
    def day(self, expr: str) -> str:
        """The UTC day of `expr` (Unix seconds) as ``YYYY-MM-DD``."""

    @abstractmethod
    def least(self, a: str, b: str) -> str:
        """The smaller of two values that are not NULL (SQLite's ``MIN(a, b)`` is NULL when
        one is; PostgreSQL's ``LEAST`` is the other)."""

    def sql(self, text: str) -> str:
        """`text` (written with ``?`` placeholders) as this database's driver takes it."""
        return text


class SqliteDialect(Dialect):
    """SQLite: ``?`` placeholders, ``CAST`` truncates, ``strftime``."""

    name = "sqlite"
    keyed_table_suffix = " WITHOUT ROWID"

    def integer(self, expr: str) -> str:
        return f"CAST({expr} AS INTEGER)"

    def hour(self, expr: str) -> str:
        return f"strftime('%Y-%m-%dT%H:00Z', {self.integer(expr)}, 'unixepoch')"

    def day(self, expr: str) -> str:
        return f"strftime('%Y-%m-%d', {self.integer(expr)}, 'unixepoch')"

    def least(self, a: str, b: str) -> str:
        return f"MIN({a}, {b})"


class PostgresDialect(Dialect):
    """PostgreSQL: ``%s`` placeholders, ``TRUNC``, ``to_char``, ``ILIKE``."""

    name = "postgresql"
    integer_type = "BIGINT"
    real_type = "DOUBLE PRECISION"
    like = "ILIKE"

    def __init__(self) -> None:
        self._translated: dict[str, str] = {}

    def integer(self, expr: str) -> str:
        return f"CAST(TRUNC({expr}) AS BIGINT)"

    def hour(self, expr: str) -> str:
        seconds = self.integer(expr)
        return f"to_char(to_timestamp({seconds}) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:00\"Z\"')"

    def day(self, expr: str) -> str:
        return f"to_char(to_timestamp({self.integer(expr)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def least(self, a: str, b: str) -> str:
        return f"LEAST({a}, {b})"

    def sql(self, text: str) -> str:
        """``?`` becomes ``%s`` and a literal ``%`` doubles (psycopg's placeholders).

        The query layer's SQL holds no ``?`` but placeholders (values are always bound),
        so the rewrite is exact; rewrites are remembered (the set of statements is small).
        """
        done = self._translated.get(text)
        if done is None:
            done = text.replace("%", "%%").replace("?", "%s")
            if len(self._translated) < 4096:
                self._translated[text] = done
        return done


SQLITE = SqliteDialect()
POSTGRES = PostgresDialect()
