"""Where records go: the `Sink` protocol, the JSON Lines file, a callback, and sinks by URL.

A sink's `write()` receives a batch of finished records in the recorder's
worker thread (never on the event loop), one batch at a time, in order. A
sink that raises loses that batch for itself only: the error is logged and
counted, and the other sinks and the requests go on.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, runtime_checkable

from .._errors import ConfigError
from ._worker import gil_friendly
from .record import RequestRecord

if TYPE_CHECKING:
    from .postgres import PostgresStore
    from .sqlite import SqliteStore, Writer

__all__ = [
    "CallbackSink",
    "JsonlSink",
    "Sink",
    "open_store",
    "path_from_url",
    "sink_from_url",
]

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@runtime_checkable
class Sink(Protocol):
    """A destination for records.

    `write` is called from the recorder's worker thread with each batch;
    `close` once, when the router closes, after the last batch.
    """

    def write(self, records: Sequence[RequestRecord]) -> None:
        """Store a batch of records."""
        ...

    def close(self) -> None:
        """Release what the sink holds (files, connections)."""
        ...


def path_from_url(url: str, scheme: str) -> Path:
    """The path of a ``scheme:///path`` URL (``sqlite:///rel.db``, ``sqlite:////abs/x.db``)."""
    prefix = f"{scheme}:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ConfigError(f"expected a '{prefix}path' URL, got {url!r}")
    return Path(url[len(prefix) :])


class JsonlSink:
    """Appends each record as one line of JSON (`RequestRecord.to_dict()`) to a file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None
        #: Closes the file: once, by `close`, or when the sink is dropped unclosed (its
        #: router was), whichever comes first: no "unclosed file" warning.
        self._close_file: weakref.finalize[..., JsonlSink] | None = None
        self._lock = threading.Lock()

    def write(self, records: Sequence[RequestRecord]) -> None:
        """Append the records and flush them to the operating system."""
        lines = "".join(_encode(r.to_dict()) + "\n" for r in gil_friendly(records))
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                file = self._file = self.path.open("a", encoding="utf-8")
                self._close_file = weakref.finalize(self, file.close)
            self._file.write(lines)
            self._file.flush()

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._close_file is not None:
                self._close_file()
                self._close_file = self._file = None


class CallbackSink:
    """Hands each batch to a function (called in the recorder's worker thread)."""

    def __init__(self, callback: Callable[[Sequence[RequestRecord]], object]) -> None:
        self.callback = callback

    def write(self, records: Sequence[RequestRecord]) -> None:
        """Call the function with the batch."""
        self.callback(records)

    def close(self) -> None:
        """Nothing to release."""


def open_store(
    url: str, *, retention: float | None = None, writer: Writer = "inline"
) -> SqliteStore | PostgresStore:
    """The log store a URL names: ``sqlite:///path``, ``postgresql://...`` (or
    ``postgres://``), or a plain path to a SQLite file; `retention` in seconds; `writer`:
    where a SQLite store writes (`SqliteStore`)."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url, retention=retention)
    from .sqlite import SqliteStore

    path = path_from_url(url, "sqlite") if url.startswith("sqlite:") else Path(url)
    return SqliteStore(path, retention=retention, writer=writer)


def sink_from_url(url: str) -> Sink:
    """The built-in sink a URL names: ``sqlite:///path``, ``postgresql://...`` or
    ``jsonl:///path``."""
    if url.startswith(("sqlite:", "postgresql:", "postgres:")):
        return open_store(url)
    if url.startswith("jsonl:"):
        return JsonlSink(path_from_url(url, "jsonl"))
    raise ConfigError(
        f"unknown sink URL {url[:60]!r}: expected sqlite:///path, postgresql://... or jsonl:///path"
    )
