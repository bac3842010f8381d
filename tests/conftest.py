"""Shared fixtures: the anyio backend (virtual time on request), a loopback OpenAI-compatible
upstream, a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import looptime
import pytest
from aiohttp import web

from _upstream import Upstream, completion_body

if TYPE_CHECKING:  # it imports redis-py, which the tests without Redis do without
    from _redis_services import ClusterSetup, SentinelSetup


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "virtual_time: run the test's event loop on fast-forwarded time (looptime), from 0.0: "
        "sleeps and timeouts take no wall time and the loop's clock reads exact",
    )


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> str | tuple[str, dict[str, Any]]:
    """asyncio; on virtual time for tests (or modules) marked ``virtual_time``.

    llmroute's `SystemClock` reads the running loop's time, so on virtual time
    its deadlines, latencies and cooldowns are exact and instant. Only for tests
    without real sockets or threads: looptime jumps over idle time.
    """
    if request.node.get_closest_marker("virtual_time") is not None:
        return "asyncio", {"loop_factory": _virtual_time_loop}
    return "asyncio"


def _virtual_time_loop() -> asyncio.AbstractEventLoop:
    """A looptime loop whose default executor is shut down without a timeout.

    On Python 3.12+ the runner gives the executor's threads 300 s to join, and looptime,
    which cannot see that join, jumps its clock over them: the join "times out" at once
    and warns (an error here) whenever a test used the default executor.
    """
    loop = looptime.new_event_loop(start=0.0)
    shutdown = loop.shutdown_default_executor

    async def shutdown_default_executor(timeout: float | None = None) -> None:
        await shutdown()  # a thread's join takes real time, whatever the loop's clock says

    loop.shutdown_default_executor = shutdown_default_executor  # type: ignore[method-assign]
    return loop


# ---------------------------------------------------------------- a loopback upstream


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream(base_url="")

    async def dispatch(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        state.requests.append(json.loads(raw) if raw else {})
        state.headers.append(request.headers.copy())
        state.queries.append(request.query_string)
        state.peers.append(
            request.transport.get_extra_info("peername") if request.transport else None
        )
        if state.handler is None:
            return web.json_response(completion_body())
        return await state.handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield state
    finally:
        await runner.cleanup()


# ---------------------------------------------------------------- a real Redis


def _no_redis(reason: str) -> None:
    """Skip, or fail when CI said Redis must be there (LLMROUTE_REQUIRE_REDIS=1 or
    LLMROUTE_REQUIRE_SERVICES=1)."""
    for variable in ("LLMROUTE_REQUIRE_REDIS", "LLMROUTE_REQUIRE_SERVICES"):
        if os.environ.get(variable) == "1":
            pytest.fail(f"{variable}=1 but {reason}")
    pytest.skip(f"{reason} (install it: apt-get install redis-server, pip install redis)")


def _redis_package() -> None:
    """redis-py present, or a skip (a failure when required)."""
    try:
        import redis  # noqa: F401
    except ImportError:
        _no_redis("the redis package is not installed")


def _redis_binary() -> str:
    """redis-server's path and redis-py present, or a skip (a failure when required)."""
    binary = shutil.which("redis-server")
    if binary is None:
        _no_redis("redis-server is not installed")
    _redis_package()
    assert binary is not None
    return binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the whole session: its base URL."""
    binary = _redis_binary()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder: Path = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {port}")
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def dead_redis() -> str:
    """A port nobody listens on (connections are refused at once): its ``redis://`` URL."""
    _redis_package()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A port that accepts connections and never answers (only timeouts end a call): its
    ``redis://`` URL."""
    _redis_package()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(100)
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """An emptied Redis database: its URL (``redis://127.0.0.1:PORT/0``)."""
    import redis

    client = redis.Redis.from_url(f"{redis_server}/0")
    client.flushdb()
    client.close()
    return f"{redis_server}/0"


# ---------------------------------------------------------------- a real PostgreSQL


def _no_postgres(reason: str) -> None:
    """Skip, or fail when CI said the services must be there (LLMROUTE_REQUIRE_SERVICES=1)."""
    if os.environ.get("LLMROUTE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"LLMROUTE_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(f"{reason} (install it: apt-get install postgresql, pip install 'psycopg[binary]')")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A real PostgreSQL (Debian's binaries), initialised into a temp folder and listening on
    a free loopback port, for the whole session (see tests/_postgres.py)."""
    from _postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        _no_postgres("the PostgreSQL server binaries (initdb, postgres) are not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_postgres("the psycopg package is not installed")
    assert bindir is not None
    server = PostgresServer(bindir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: Any) -> Iterator[str]:
    """A new empty database on the session's server, dropped after the test: its URL."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)


def new_store_url(request: pytest.FixtureRequest, kind: str, folder: Path) -> str:
    """A URL for an empty log store of `kind` (``sqlite`` or ``postgresql``): a file in
    `folder`, or a new database on the session's PostgreSQL (dropped at the end of the
    requesting fixture's scope)."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'log.db'}"
    server = request.getfixturevalue("postgres_server")
    url: str = server.create_database()
    request.addfinalizer(lambda: server.drop_database(url))
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty log store's URL, once per kind of store: the same test runs over both."""
    return new_store_url(request, request.param, tmp_path)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    """A real Redis Cluster for the whole session: three masters and one replica (see
    tests/_redis_services.py)."""
    binary = _redis_binary()
    from _redis_services import start_cluster

    setup = start_cluster(binary, tmp_path_factory.mktemp("cluster"))
    try:
        yield setup
    finally:
        setup.stop()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    """A real master, replica and three sentinels for the whole session."""
    binary = _redis_binary()
    from _redis_services import start_sentinel

    setup = start_sentinel(binary, tmp_path_factory.mktemp("sentinel"))
    try:
        yield setup
    finally:
        setup.stop()


@pytest.fixture(params=["server", "cluster", "sentinel"])
def shared_redis(request: pytest.FixtureRequest) -> str:
    """An emptied Redis of each kind in turn: one server, a Cluster, a master behind
    Sentinel. Its URL (``redis://``, ``redis+cluster://``, ``redis+sentinel://``)."""
    if request.param == "server":
        url: str = request.getfixturevalue("redis_url")
        return url
    setup: ClusterSetup | SentinelSetup = request.getfixturevalue(f"redis_{request.param}")
    setup.flush()
    return setup.url
