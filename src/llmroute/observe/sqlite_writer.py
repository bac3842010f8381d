"""The SQLite store's writes: one batch's transaction, run here or in a writer process.

`write_batch` stores a batch's rows (already built: tuples of str, int, float
and None) in one transaction: skip the request ids already stored, insert
the requests, attempts and properties, run the statements that add the batch
to the rollups and latency histograms (they read the rows just inserted, by
rowid), prune what retention drops, commit. The SQL comes in a `Plan`, plain
data, so that this module needs nothing but the standard library.

`WriterProcess` runs `write_batch` in a child process (this file run as a
script: ``python -I -S sqlite_writer.py``, which imports only ``sqlite3``
and ``marshal``). On two cores with an event loop that is CPU-bound, the
writer thread's SQLite work, though it releases the GIL, took a core's time
and the GIL's hand-offs from the loop: 37-50 µs of the process's CPU per
stored record (`benchmarks/bench_observe.py`). In the child it costs the
router's process the rows' marshalling only (about 5 µs a record, rows
included). Frames on the child's stdin and stdout: a 4-byte little-endian
length, then a `marshal` payload (which builds data, never code). The parent
sends the plan, then one frame per batch, and waits for the child's answer
to each (``("ok", stored)`` after the commit, or ``("error", type, message)``
after a rollback): a batch the parent's ``write`` returned from is
committed, as in process. At end of input the child closes its connection
and exits; the parent's `close` waits for that.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import signal
import sqlite3
import sys
import threading
import weakref
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

__all__ = [
    "ATTEMPT_COLUMNS",
    "REQUEST_COLUMNS",
    "WATCHED_PARTS",
    "Encoded",
    "Plan",
    "WriterProcess",
    "decode_rows",
    "insert_rows",
    "interpreter",
    "linear_cost",
    "open_writer",
    "watched_rows",
    "write_batch",
]

Row = Sequence[Any]

REQUEST_COLUMNS = (
    "request_id", "operation", "started_at", "ended_at", "request_model", "route", "strategy",
    "target", "provider", "model", "response_model", "response_id", "stream", "status",
    "latency_s", "ttft_s", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "reasoning_tokens", "tokens_estimated", "cost_usd", "cache",
    "answered_by", "limit_type", "error_type", "error", "finish_reasons", "user", "session",
    "properties", "prompt", "completion", "experiment", "variant", "saved_usd", "key", "team",
    "assignment", "sticky_key", "off_variant",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "request_id", "idx", "target", "provider", "model", "kind", "outcome", "status",
    "error_type", "error", "started_s", "latency_s",
)  # fmt: skip
#: A record as the store receives it: encoded (`llmroute.observe.rows.encode_record`), or
#: encoded before its request was priced, with its ``cost_usd`` and ``saved_usd``.
Encoded = bytes | tuple[bytes, float | None, float | None]


class Plan(NamedTuple):
    """The SQL of a batch's transaction (plain data: it is sent to the writer process).

    Attributes:
        requests, attempts, properties: the columns of each table, in row order.
        after: statements run after the inserts, each with how many times it binds
            the largest rowid of ``requests`` before the batch (the rollups').
        prune: deletes of retention, each binding the cutoff once.
    """

    requests: tuple[str, ...]
    attempts: tuple[str, ...]
    properties: tuple[str, ...]
    after: tuple[tuple[str, int], ...]
    prune: tuple[str, ...]


def insert_rows(
    conn: sqlite3.Connection, table: str, columns: Sequence[str], rows: Sequence[Row]
) -> None:
    """Insert `rows` with as few statements as SQLite's variable limit allows.

    A multi-row INSERT runs as one step: SQLite releases the GIL once per
    statement rather than once per row, which matters because the event
    loop's thread wants the GIL back each time. A None is written as a literal
    NULL rather than bound: the sqlite3 module binds None through its
    adaptation protocol, which fails two attribute lookups per value (with
    exceptions raised and cleared) and cost more than the rest of the row did;
    most columns of most records are empty.

    Fast path: 263k -> 217k instructions per stored record (callgrind, b251237).
    Oracle: tests/test_fast_paths.py (rows read back as with None bound).
    """
    head = f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES "  # noqa: S608
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    row_sql: dict[tuple[bool, ...], str] = {}
    values: list[str] = []
    params: list[Any] = []
    for row in rows:
        empty = tuple([value is None for value in row])
        one = row_sql.get(empty)
        if one is None:
            one = row_sql[empty] = "(" + ", ".join(["NULL" if e else "?" for e in empty]) + ")"
        bound = [value for value in row if value is not None]
        if len(params) + len(bound) > limit:
            conn.execute(head + ", ".join(values), params)
            values, params = [], []
        values.append(one)
        params += bound
    if values:
        conn.execute(head + ", ".join(values), params)


def write_batch(
    conn: sqlite3.Connection,
    plan: Plan,
    requests: Sequence[Row],
    attempts: Sequence[Row],
    properties: Sequence[Row],
    cutoff: float | None,
) -> int:
    """Store a batch's rows in one transaction (each row's first value is its request id; a
    request stored already is skipped, with its attempts and properties); with `cutoff`,
    delete what started before it. Returns how many requests were stored."""
    # IMMEDIATE: take the write lock first, waiting the busy timeout for another
    # process's batch. A deferred transaction reads first (the ids already
    # stored), and upgrading it to a writer after another process committed
    # fails at once ("database is locked"), without waiting.
    conn.execute("BEGIN IMMEDIATE")
    try:
        ids = json.dumps([row[0] for row in requests])
        stored = {
            row[0]
            for row in conn.execute(
                "SELECT request_id FROM requests WHERE request_id IN "
                "(SELECT value FROM json_each(?))",
                (ids,),
            )
        }
        if stored:
            requests = [row for row in requests if row[0] not in stored]
            attempts = [row for row in attempts if row[0] not in stored]
            properties = [row for row in properties if row[0] not in stored]
        after = int(conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM requests").fetchone()[0])
        insert_rows(conn, "requests", plan.requests, requests)
        insert_rows(conn, "attempts", plan.attempts, attempts)
        insert_rows(conn, "properties", plan.properties, properties)
        for sql, binds in plan.after:
            conn.execute(sql, (after,) * binds)
        if cutoff is not None:
            for sql in plan.prune:
                conn.execute(sql, (cutoff,))
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return len(requests)


def open_writer(path: str, timeout: float, cached_statements: int) -> sqlite3.Connection:
    """A writing connection to a store already created and migrated (in WAL mode)."""
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None,
                           check_same_thread=False, cached_statements=cached_statements)  # fmt: skip
    try:
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=OFF")
        try:  # the latency bins' SQL needs ln(): Python's when SQLite has none (the same C log)
            conn.execute("SELECT ln(1)")
        except sqlite3.OperationalError as exc:
            if "no such function" not in str(exc):
                raise
            conn.create_function("ln", 1, _ln, deterministic=True)
    except BaseException:
        conn.close()
        raise
    return conn


def _ln(value: float | None) -> float | None:
    import math

    if value is None or value <= 0:
        return None
    return math.log(value)


#: How many parts the encoding of a request's end has (`watched_rows`); a record's has 3.
WATCHED_PARTS = 10


def linear_cost(rates: Sequence[float], usage: Sequence[int]) -> float:
    """The cost of `usage` (input, output, cache read, cache write and reasoning tokens) at
    flat `rates` (USD for the request, then per input, cache read, cache write, output and
    reasoning token): what `llmroute._prices._LinearRates.apply` computes, term for term
    in the same order, so the same float (oracle: tests/test_observe_watch.py)."""
    fixed, per_input, per_cache_read, per_cache_write, per_output, per_reasoning = rates
    input_tokens, output, cache_read, cache_write, reasoning = usage[:5]
    uncached = max(0, input_tokens - cache_read - cache_write)
    return (
        fixed
        + uncached * per_input
        + cache_read * per_cache_read
        + cache_write * per_cache_write
        + (output - reasoning) * per_output
        + reasoning * per_reasoning
    )


def watched_rows(parts: Sequence[Any]) -> tuple[Row, list[Row], list[Row]]:
    """The request row (`REQUEST_COLUMNS`), attempt rows and property rows of a request
    encoded from its end (`llmroute.observe.rows.encode_ended`), which leaves these rows to
    the store: what the request's end read, each group as one tuple (its end's values, its
    usage, its answer's model, id and finish reasons, its failure's status, type, message
    and limit), its cost and savings, and each attempt's values. The rows are those
    `encode_record` gives for the record `build_record` makes of the same request (the
    same arithmetic on the same floats, the same JSON text). Its cost is computed here
    when the request's end gave the flat rates it is priced at (`linear_cost`)."""
    (
        (operation, model, started, started_at, ended, route_name, route_strategy),
        (request_id, route, strategy, target, provider, served, ttft, cache, latency,
         user, session, key, team),
        usage, facts, failure, cost, saved, tried, rates, properties,
    ) = parts  # fmt: skip
    if rates is not None and usage is not None:
        cost = linear_cost(rates, usage)
    if latency is None:
        latency = ended - started
    if usage is None:
        tokens: tuple[Any, ...] = (None,) * 6
    else:
        tokens = (*usage[:5], int(usage[5]))
    answered, answer_id, reasons = (None, None, None) if facts is None else facts
    status, error_type, message, limit = ("ok", None, None, None) if failure is None else failure
    request = (  # REQUEST_COLUMNS, in order
        request_id, operation, started_at, started_at + latency, model,
        route if route is not None else route_name, strategy or route_strategy, target,
        provider, served, answered, answer_id,
        0,  # stream: an end is a whole answer's
        status, latency, ttft, *tokens, cost, cache,
        None,  # answered_by: no stage answers a watched request
        limit, error_type, message, json.dumps(reasons) if reasons else None, user, session,
        properties,  # JSON text already (None: none)
        None, None,  # prompt, completion: not captured
        None, None,  # experiment, variant: no experiment runs
        saved, key, team,
        None, None, 0,  # assignment, sticky_key, off_variant: no experiment
    )  # fmt: skip
    attempts: list[Row] = [
        (request_id, i, a_target, a_provider, a_model, kind, outcome, a_status, a_error_type,
         a_error, (a_started - started) if a_started is not None else 0.0, a_latency)
        for i, (a_target, a_provider, a_model, kind, outcome, a_status, a_error_type, a_error,
                a_started, a_latency) in enumerate(tried)
    ]  # fmt: skip
    tags: list[Row] = (
        [(request_id, k, v, started_at) for k, v in json.loads(properties).items()]
        if properties
        else []
    )
    return request, attempts, tags


def decode_rows(items: Sequence[Encoded], plan: Plan) -> tuple[list[Row], list[Row], list[Row]]:
    """The rows of records encoded by `llmroute.observe.rows.encode_record` (each item: its
    request row, attempt rows and property rows, marshalled) or `encode_ended` (its parts,
    `watched_rows`); or either with the request's ``cost_usd`` and ``saved_usd``, priced
    after it was encoded: table by table."""
    requests: list[Row] = []
    attempts: list[Row] = []
    properties: list[Row] = []
    loads = marshal.loads
    cost = saved = -1
    for item in items:
        if isinstance(item, bytes):
            parts = loads(item)
            request, more, props = watched_rows(parts) if len(parts) == WATCHED_PARTS else parts
        else:
            if cost < 0:
                cost, saved = plan.requests.index("cost_usd"), plan.requests.index("saved_usd")
            encoded, cost_usd, saved_usd = item
            parts = loads(encoded)
            row, more, props = watched_rows(parts) if len(parts) == WATCHED_PARTS else parts
            request = list(row)
            request[cost], request[saved] = cost_usd, saved_usd
        requests.append(request)
        attempts += more
        properties += props
    return requests, attempts, properties


# ---------------------------------------------------------------- frames


#: The `marshal` version of a frame: 2 keeps no table of the objects written (3 and later
#: enter each object referenced twice, every record of a batch, in a table built for
#: each frame), and a frame's objects are a tree of values.
_FRAME_VERSION = 2


def _send(out: IO[bytes], payload: Any) -> None:
    data = marshal.dumps(payload, _FRAME_VERSION)
    out.write(len(data).to_bytes(4, "little") + data)
    out.flush()


def _receive(source: IO[bytes]) -> Any:
    """The next frame's payload (EOFError at the end of input, or in a cut frame)."""
    head = source.read(4)
    if len(head) < 4:
        raise EOFError
    size = int.from_bytes(head, "little")
    data = source.read(size)
    if len(data) < size:
        raise EOFError
    return marshal.loads(data)  # noqa: S302 - our own parent's or child's frames, over a pipe


# ---------------------------------------------------------------- the parent's side


class WriterProcess:
    """A child process that writes a store's batches (`write_batch`), started on first use.

    Args:
        path: the store's file, created and migrated already.
        plan: the batch's SQL.
        timeout: SQLite's busy timeout in the child (seconds).
        cached_statements: prepared statements the child's connection keeps.
    """

    def __init__(self, path: Path, plan: Plan, *, timeout: float, cached_statements: int) -> None:
        self._path = path
        self._plan = plan
        self._timeout = timeout
        self._cached = cached_statements
        self._child: subprocess.Popen[bytes] | None = None
        self._owner = 0  # the process that started the child (a fork starts its own)
        self._lock = threading.Lock()
        _WRITERS.add(self)

    def _after_fork(self) -> None:
        """In a forked process: let go of the parent's child at once (the parent's `close`
        waits for its child to see the end of its input, which it would not while this
        process held copies of the pipe), with a lock of its own (the parent's may have
        been held by another thread when it forked)."""
        self._lock = threading.Lock()
        self._running()

    @property
    def pid(self) -> int | None:
        """The child's process id (None when none is running for this process)."""
        child = self._running()
        return None if child is None else child.pid

    def _running(self) -> subprocess.Popen[bytes] | None:
        """The child, if this process started it. A process forked from the one that did
        must not write into its pipe (their frames would interleave): it lets go of its
        copies of the pipe's ends and starts a child of its own."""
        child = self._child
        if child is not None and self._owner != os.getpid():
            self._child = None
            for stream in (child.stdin, child.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()  # this process's copy; the owner keeps its own
            return None
        return child

    def start(self) -> subprocess.Popen[bytes]:
        """Start the child and have it open the store (`write` does when none runs);
        OSError when no process can be started."""
        import subprocess

        python = interpreter()
        if python is None:
            raise OSError(
                f"no Python interpreter to run the SQLite writer process: sys.executable is "
                f"{sys.executable!r}" + (" (a frozen application)" if _frozen() else "")
            )
        child = subprocess.Popen(  # noqa: S603 - this interpreter, this file, the store's path
            [python, "-I", "-S", os.path.abspath(__file__), str(self._path),
             repr(self._timeout), str(self._cached)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert child.stdin is not None and child.stdout is not None
        try:
            _send(child.stdin, tuple(self._plan))
            self._check(_receive(child.stdout))  # it opened the store
        except EOFError as exc:  # it could not run (this file is not one Python can run)
            code = _stop(child)
            raise OSError(f"the SQLite writer process ended at start (exit status {code})") from exc
        except BaseException:
            _stop(child)
            raise
        self._child, self._owner = child, os.getpid()
        return child

    def write(self, items: Sequence[Encoded], cutoff: float | None) -> int:
        """Have the child store a batch of encoded records (`decode_rows`, `write_batch`);
        returns once it is committed. A child that ends meanwhile is replaced and the
        batch sent once more (`write_batch` skips the requests a batch already stored, so
        a batch committed just before its answer was lost is not stored twice)."""
        frame = (list(items), cutoff)
        with self._lock:
            for tries_left in (1, 0):
                child = self._running() or self.start()
                assert child.stdin is not None and child.stdout is not None
                try:
                    _send(child.stdin, frame)
                    answer = _receive(child.stdout)
                except (OSError, EOFError) as exc:
                    self._child = None
                    code = _stop(child)
                    if tries_left:
                        continue
                    raise RuntimeError(
                        f"the SQLite writer process of {self._path} ended twice (exit status "
                        f"{code}) before storing this batch; the next batch starts a new one"
                    ) from exc
                except BaseException:
                    # interrupted between a frame and its answer: the next batch must not
                    # read this one's answer, so this child goes (it ends its batch first)
                    self._child = None
                    _stop(child)
                    raise
                return int(self._check(answer))
        raise AssertionError("unreachable: the loop returns or raises")

    @staticmethod
    def _check(answer: Any) -> Any:
        if answer[0] == "ok":
            return answer[1]
        _, kind, message = answer
        raise sqlite3.OperationalError(f"SQLite writer process: {kind}: {message}")

    def close(self) -> None:
        """End the child once it has written what it was sent (it commits each batch
        before answering, so this only closes its connection)."""
        with self._lock:
            child = self._running()
            self._child = None
            if child is not None:
                _stop(child)


#: The live writers of this process, for `_after_fork`.
_WRITERS: weakref.WeakSet[WriterProcess] = weakref.WeakSet()


def _forget_parents_children() -> None:
    for writer in list(_WRITERS):
        writer._after_fork()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_parents_children)


def _frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def interpreter() -> str | None:
    """The Python that runs the writer process: this one, when it is a Python executable
    (not a frozen application, nor a host embedding Python such as uWSGI, whose
    `sys.executable` would start the application again); None otherwise."""
    path = sys.executable
    if not path or _frozen():
        return None
    name = os.path.basename(path).lower()
    return path if name.startswith(("python", "pypy")) else None


def _stop(child: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """Close the child's input (it ends once it has finished its batch), wait for it; kill
    it if it does not end within `timeout`. Returns its exit status."""
    import subprocess

    for stream in (child.stdin, child.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):  # a broken pipe: the child is gone already
                stream.close()
    try:
        return child.wait(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


# ---------------------------------------------------------------- the child's side


def _serve(path: str, timeout: float, cached: int) -> int:
    # a signal meant for the parent must not cut a batch short (^C reaches the whole process
    # group; systemd's default stop sends SIGTERM to every process of the service at once):
    # the child ends at the end of its input, when the parent closes it or is gone
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    source, out = sys.stdin.buffer, sys.stdout.buffer
    try:
        plan = Plan(*_receive(source))
    except EOFError:
        return 0
    try:
        conn = open_writer(path, timeout, cached)
    except Exception as exc:  # reported to the parent, which raises it
        _send(out, ("error", type(exc).__name__, str(exc)))
        return 1
    _send(out, ("ok", 0))
    try:
        while True:
            try:
                items, cutoff = _receive(source)
            except EOFError:
                return 0
            answer: tuple[object, ...]
            try:
                answer = ("ok", write_batch(conn, plan, *decode_rows(items, plan), cutoff))
            except Exception as exc:  # rolled back; reported to the parent, which raises it
                answer = ("error", type(exc).__name__, str(exc))
            try:
                _send(out, answer)
            except BrokenPipeError:  # the parent is gone (killed): its batch is committed
                return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1], float(sys.argv[2]), int(sys.argv[3])))
