"""``llmroute serve``: find the configuration, check it is safe to serve, announce it, run uvicorn.

The configuration comes from, in order: ``--config FILE``; ``llmroute.yaml``
(``.yml``, ``.toml``, ``.json``) in the current folder; the providers whose
keys are in the environment (with a ``chat`` route over a small model of each
that has a well-known one); else an announced offline demo over the simulated
``mock`` provider.

SIGTERM or SIGINT stops it gracefully; the exit status is 0 when every
request in flight finished and the router was closed (its records flushed),
1 when the shutdown had to cut requests short (see `_run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.util
import ipaddress
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from .. import __version__
from .._config import Config
from .._config_load import load_config, load_file, providers_from_env
from .._errors import ConfigError
from .._router import AsyncRouter
from .._text import printable
from .._views import RouteView
from ..stores.redis_urls import REDIS_SCHEMES
from .config import ServerConfig

if TYPE_CHECKING:
    import uvicorn

__all__ = [
    "DEMO_CONFIG", "ServeSource", "discover", "http_protocol", "load", "per_worker_state",
    "refusals", "start", "summary", "uvicorn_config", "worker_app",
]  # fmt: skip

logger = logging.getLogger("llmroute.server")

#: Files looked for in the current folder, in this order.
CONFIG_FILES = ("llmroute.yaml", "llmroute.yml", "llmroute.toml", "llmroute.json")
#: A small model per service for the ``chat`` route made from the environment's keys.
ENV_MODELS = {
    "openai": "gpt-4o-mini", "groq": "llama-3.1-8b-instant", "mistral": "mistral-small-latest",
    "deepseek": "deepseek-chat", "openrouter": "openai/gpt-4o-mini",
}  # fmt: skip
#: The offline demo: a primary failing one answer in three, a healthy fallback (both priced
#: like small hosted models, so costs show), a response cache and a request log.
DEMO_CONFIG: dict[str, Any] = {
    "providers": {
        "flaky": {"type": "mock", "script": [503, "ok", "ok"], "repeat_script": True,
                  "latency": "30ms", "chunk_delay": "10ms",
                  "text": "Hello from flaky, the primary target of the demo route."},
        "steady": {"type": "mock", "latency": "80ms", "chunk_delay": "10ms",
                   "text": "Hello from steady, the fallback: flaky failed, so I answered."},
    },
    "routes": {
        "demo": {
            "targets": [
                {"provider": "flaky", "model": "demo-model", "price": {"input": 0.15, "output": 0.6}},
                {"provider": "steady", "model": "demo-model", "price": {"input": 0.5, "output": 1.5}},
            ],
            "timeout": "10s",
        },
    },
    "cache": {"ttl": "10m"},
    "logging": {"store": "sqlite:///llmroute.db"},
}  # fmt: skip
#: Where `worker_app` finds the configuration source when there are several workers.
SOURCE_VARIABLE = "LLMROUTE_SERVE_SOURCE"
_PER_WORKER_SECTIONS = ("rate_limits", "budgets", "cache")


@dataclass(frozen=True, slots=True)
class ServeSource:
    """Where the served configuration comes from; `reason` says why a demo was chosen."""

    kind: Literal["file", "env", "demo"]
    path: Path | None = None
    reason: str = ""

    def encode(self) -> str:
        """The source as `SOURCE_VARIABLE` holds it."""
        return f"file:{self.path}" if self.kind == "file" else self.kind

    @classmethod
    def decode(cls, text: str) -> ServeSource:
        """The source `encode` wrote."""
        if text.startswith("file:"):
            return cls("file", Path(text[5:]))
        if text in ("env", "demo"):
            return cls(text)  # type: ignore[arg-type]
        raise ValueError(f"bad {SOURCE_VARIABLE}: {text!r}")


def discover(config: str | None, env: Mapping[str, str] | None = None) -> ServeSource:
    """Which configuration to serve (see the module's docstring)."""
    if config:
        return ServeSource("file", Path(config))
    found = next((Path(n) for n in CONFIG_FILES if Path(n).is_file()), None)
    if found is not None:
        return ServeSource("file", found)
    keys = providers_from_env(env)
    if keys:
        return ServeSource("env")
    return ServeSource(
        "demo", reason="no llmroute.yaml here and no provider keys in the environment"
    )


def load(source: ServeSource, env: Mapping[str, str] | None = None) -> Config:
    """The configuration of `source`."""
    if source.kind == "file":
        assert source.path is not None
        return load_file(source.path, env=env)
    if source.kind == "env":
        found = providers_from_env(env)
        targets = [f"{name}/{ENV_MODELS[name]}" for name in found if name in ENV_MODELS]
        routes = {"chat": {"targets": targets}} if targets else {}
        # the detected providers are this source's configuration: listed, so they stay
        # reachable when implicit providers are off (their keys come from the environment)
        providers = {name: {"type": name} for name in found}
        return load_config({"providers": providers, "routes": routes}, env=env)
    return load_config(DEMO_CONFIG, env=env)


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _redis(value: object) -> bool:
    """Whether a config section names a Redis URL anywhere (its state is then shared)."""
    if isinstance(value, str):
        return value.startswith(REDIS_SCHEMES)
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, Mapping):
        return any(_redis(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_redis(v) for v in value)
    return False


def per_worker_state(config: Config) -> dict[str, str]:
    """Each of ``rate_limits``, ``budgets`` and ``cache`` that is configured: ``memory`` or ``redis``."""
    found = {}
    for name in _PER_WORKER_SECTIONS:
        section = getattr(config, name, None)
        if section is not None:
            found[name] = "redis" if _redis(section) else "memory"
    return found


def refusals(config: Config, server: ServerConfig, *, per_worker_limits: bool = False) -> list[str]:
    """Why serving `config` as `server` says would be unsafe (empty: it is not)."""
    problems = []
    if not server.keys and not server.allow_unauthenticated and not is_loopback(server.host):
        problems.append(
            f"no gateway keys are configured, so llmroute only listens on a loopback address, "
            f"not {server.host!r}: add server.keys (see `llmroute new-key`), or pass "
            "--allow-unauthenticated to let anyone who reaches it spend your provider keys"
        )
    if server.workers > 1 and not per_worker_limits:
        local = [
            n for n, where in per_worker_state(config).items() if where == "memory" and n != "cache"
        ]
        if local:
            problems.append(
                f"with {server.workers} workers, in-memory {' and '.join(local)} would be enforced "
                "per worker (each allowing the whole amount): store them in Redis, run one "
                "worker, or pass --allow-per-worker-limits"
            )
    return problems


def _route_line(name: str, route: RouteView) -> str:
    targets = " -> ".join(t.key for t in route.targets)
    fallbacks = f"; then routes {', '.join(route.fallbacks)}" if route.fallbacks else ""
    return f"{name:<12} {route.strategy:<8} {targets}{fallbacks}"


def summary(source: ServeSource, router: AsyncRouter, server: ServerConfig) -> str:
    """The start-up announcement: what is served, where, to whom, and where state lives."""
    routes_by_name, providers = router.routes(), router.providers()
    host = f"[{server.host}]" if ":" in server.host else server.host
    base = f"http://{host}:{server.port}"
    where = {"file": str(source.path), "env": "providers found in the environment",
             "demo": "offline demo"}  # fmt: skip
    routes = [_route_line(n, r) for n, r in routes_by_name.items()]
    metrics = "off" if server.metrics == "off" else f"{base}/metrics"
    lines = [
        f"llmroute {__version__} gateway on {base}/v1 (OpenAI-compatible); "
        f"config: {where[source.kind]}",
        "  routes:   " + ("\n            ".join(routes) or "(none: use provider/model)"),
        f"  direct:   provider/model for providers {', '.join(sorted(providers)) or '-'}",
        _keys_line(server),
        *_store_lines(router.config, server),
        _policy_line(router.config, server),
        f"  metrics:  {metrics}{_METRICS_NOTE[server.metrics_access]}; "
        f"liveness {base}/health; readiness {base}/ready",
        f"  dashboard: {base}/dashboard ("
        + ("keys marked admin: true" if server.keys else "clients on this machine only")
        + ("" if router.config.logging and router.config.logging.store else "; no log store")
        + ")",
        f"  workers:  {server.workers}; on shutdown, in-flight requests get "
        f"{server.shutdown_timeout:g}s",
    ]
    if source.kind == "demo":
        lines.insert(0, _demo_banner(source, base))
    return "\n".join(lines)


def _keys_line(server: ServerConfig) -> str:
    if server.keys:
        names = ", ".join(k.name for k in server.keys)
        return (
            f"  keys:     {len(server.keys)} ({names}); requests need 'Authorization: Bearer <key>'"
        )
    loopback = ", loopback only" if is_loopback(server.host) else ""
    return f"  keys:     none: no authentication{loopback}"


def _policy_line(config: Config, server: ServerConfig) -> str:
    """What the gateway does where safety and money are at stake (docs/security.md)."""
    parts = [
        "any provider/model" if server.implicit_providers else "only configured providers",
        f"upstream errors {_UPSTREAM_ERRORS[server.upstream_errors]}",
    ]
    if config.cache is not None:
        parts.append(f"cache shared per {config.cache.scope}")
    budgets = config.budgets
    if budgets is not None and budgets.rules:
        unpriced = budgets.unpriced if isinstance(budgets.unpriced, str) else "a set price"
        parts.append(
            f"budgets: unpriced targets {_UNPRICED[unpriced]}, "
            f"{budgets.when_unavailable} when Redis is lost"
        )
    limits = config.rate_limits
    if limits is not None and limits.rules:
        parts.append(f"rate limits: {limits.when_unavailable} when Redis is lost")
    return "  policies: " + "; ".join(parts)


#: How the summary words `server.upstream_errors`.
_UPSTREAM_ERRORS = {"scrub": "scrubbed", "generic": "replaced by a generic message",
                    "pass": "passed through"}  # fmt: skip
#: How the summary words `budgets.unpriced`.
_UNPRICED = {"refuse": "refused", "allow": "counted as free", "a set price": "at a set price"}


def _store_lines(config: Config, server: ServerConfig) -> list[str]:
    log = config.logging
    store = log.store if log is not None and log.store else "none"
    sinks = f", sinks {', '.join(log.sinks)}" if log is not None and log.sinks else ""
    state = per_worker_state(config)
    where = ", ".join(f"{n} in {'Redis' if w == 'redis' else 'memory'}" for n, w in state.items())
    local = [n for n, w in state.items() if w == "memory"]
    per_worker = f"; with {server.workers} workers, {', '.join(local)} per worker" if (
        server.workers > 1 and local
    ) else ""  # fmt: skip
    statistics = "health and latency statistics in memory"
    return [
        f"  stores:   request log {store}{sinks}; {where or 'no cache, rate limits or budgets'}",
        f"            {statistics}{', per worker' if server.workers > 1 else ''}{per_worker}",
    ]


def _demo_banner(source: ServeSource, base: str) -> str:
    body = '{"model": "demo", "messages": [{"role": "user", "content": "Hello"}]}'
    stream = '{"model": "demo", "stream": true, "messages": [{"role": "user", "content": "Hi"}]}'
    return (
        f"DEMO ({source.reason}):\n"
        "serving an offline demo over the built-in simulated 'mock' provider: no keys, no network.\n"
        "Route 'demo' = flaky/demo-model, then steady/demo-model. flaky fails one answer in three\n"
        "with HTTP 503 and the request fails over to steady (watch x-llmroute-provider and\n"
        "x-llmroute-attempts); answers are cached for 10 minutes (send the same request twice:\n"
        "x-llmroute-cache: HIT). Try:\n"
        f"  curl -si {base}/v1/chat/completions -H 'content-type: application/json' \\\n"
        f"    -d '{body}'\n"
        f"  curl -sN {base}/v1/chat/completions -H 'content-type: application/json' \\\n"
        f"    -d '{stream}'\n"
        f"  curl -s {base}/metrics | grep ^llmroute_\n"
        "  llmroute stats          (every request is logged to ./llmroute.db)\n"
    )


def _uvicorn_settings(server: ServerConfig) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "lifespan": "on",
        "ws": "none",
        "access_log": server.access_log,
        "log_level": "info",
        "server_header": False,
        "timeout_graceful_shutdown": math.ceil(server.shutdown_timeout),
        "timeout_keep_alive": math.ceil(server.keep_alive),
        # not uvicorn's limit_concurrency, which counts idle connections too: see protocol.py
    }


#: What the summary says of who may read /metrics.
_METRICS_NOTE = {"admin": " (needs an admin key)", "key": " (needs a key)", "public": "", "off": ""}


def _implicit(config: Config) -> bool:
    """Whether the served router lets clients reach providers the config does not list."""
    return config.server is not None and config.server.implicit_providers


def http_protocol(name: Literal["auto", "h11", "httptools"] = "auto") -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol `name` (``auto``: httptools when installed, else h11), with
    the gateway's bounds on request heads (`llmroute.server.protocol`)."""
    if name == "httptools" or (name == "auto" and importlib.util.find_spec("httptools")):
        from .protocol_httptools import BoundedHttpToolsProtocol

        return BoundedHttpToolsProtocol
    from .protocol import BoundedH11Protocol

    return BoundedH11Protocol


def uvicorn_config(
    app: Any,
    server: ServerConfig,
    *,
    http: Literal["auto", "h11", "httptools"] = "auto",
    **settings: Any,
) -> uvicorn.Config:
    """The uvicorn configuration `llmroute serve` runs `app` with: `server`'s address,
    timeouts and bounds, the bounded HTTP protocol `http`; `settings` override uvicorn's."""
    from .protocol import BoundedConfig, HeadBounds

    bounds = HeadBounds(
        max_size=int(server.max_head_size),
        timeout=server.head_timeout,
        max_busy=server.max_connections,
    )
    merged = {**_uvicorn_settings(server), **settings}
    return BoundedConfig(app, bounds=bounds, http=http_protocol(http), **merged)


#: How many new container objects trigger a young collection in `llmroute serve`
#: (`settle_heap`; Python's default is 700).
YOUNG_COLLECTION_EVERY = 10_000


def worker_app() -> Any:
    """The app of one worker process (``--workers N``): loads the source the parent found."""
    from .app import create_app

    source = ServeSource.decode(os.environ[SOURCE_VARIABLE])
    loaded = load(source)
    router = AsyncRouter(loaded, implicit_providers=_implicit(loaded))
    app = create_app(router)
    settle_heap(router)  # uvicorn calls this factory before the worker takes traffic
    return app


def settle_heap(router: AsyncRouter) -> None:
    """Ready the serving process's heap for traffic: load what `router`'s first requests
    would (`AsyncRouter.warm_up`), collect the start-up's garbage, put every object alive
    out of the cyclic collector's sight (`gc.freeze`), and collect the youngest
    generation every `YOUNG_COLLECTION_EVERY` new objects instead of 700.

    The modules, the configuration and the router live as long as the process, and each
    full collection walked all of them (~91,000 objects, 40-70 ms with the event loop
    stopped), six times under one `bench_server.py` run of about 6,000 requests; the
    young collections came every ~9 requests. In that run the gateway's collections
    took 618 ms in all, and 128 ms with its heap settled (docs/server.md#speed-and-size).
    It holds a little more memory: an app driven in process through 60,000 requests
    settled at 0.9 MB more than unsettled, 2.3 MB more when every request's first attempt
    failed (each leaves ~56 objects of cyclic garbage, collected later).
    Only `llmroute serve` calls it: it owns its process's heap, as an embedding
    application owns its own."""
    router.warm_up()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *gc.get_threshold()[1:])


def _missing_extra() -> str | None:
    missing = [m for m in ("uvicorn", "prometheus_client") if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f"llmroute serve needs {' and '.join(missing)}: pip install 'llmroute[server]'"


def start(
    *,
    config: str | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    allow_unauthenticated: bool = False,
    allow_per_worker_limits: bool = False,
    access_log: bool = False,
) -> int:
    """Run ``llmroute serve`` until it is stopped; return the exit code.

    Raises `ConfigError` for a configuration that cannot be loaded. Refuses
    (exit code 2) to serve without keys on a non-loopback address, or
    in-memory limits from several workers, unless told to. Stopped by
    SIGTERM or SIGINT, returns 0 after a clean drain, 1 when the shutdown
    cut requests short.
    """
    missing = _missing_extra()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    setup_logging()
    source = discover(config)
    loaded = load(source)
    server = with_flags(
        loaded.server or ServerConfig(), host=host, port=port, workers=workers,
        allow_unauthenticated=allow_unauthenticated, access_log=access_log,
    )  # fmt: skip
    router = AsyncRouter(loaded, implicit_providers=_implicit(loaded))
    problems = refusals(loaded, server, per_worker_limits=allow_per_worker_limits)
    if problems or server.workers > 1:
        asyncio.run(router.aclose())  # the workers build their own
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        return 2
    logger.info(summary(source, router, server))  # ours: its line breaks are kept
    return _run(source, router, server)


def with_flags(
    server: ServerConfig,
    *,
    host: str | None = None,
    port: int | None = None,
    workers: int | None = None,
    allow_unauthenticated: bool = False,
    access_log: bool = False,
) -> ServerConfig:
    """`server` with the command line's flags applied (a flag given wins over the file)."""
    update: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None
    }
    if allow_unauthenticated:
        update["allow_unauthenticated"] = True
    if access_log:
        update["access_log"] = True
    try:
        return ServerConfig.model_validate({**server.model_dump(), **update})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"--{where.replace('_', '-')}: {first['msg']}") from exc


def _run(source: ServeSource, router: AsyncRouter, server: ServerConfig) -> int:
    """Run uvicorn until it is stopped (SIGINT or SIGTERM: a graceful shutdown); the exit code.

    One worker: 0 when the app drained (every request in flight finished, then
    the router closed and flushed its records), else 1: uvicorn's graceful
    shutdown timed out and cancelled requests (recorded as cancelled), the app's
    own shutdown timeout passed, or a second SIGINT forced the exit. Several
    workers: uvicorn's supervisor handles the signals and returns, so 0.
    """
    import uvicorn

    from .app import create_app

    if server.workers > 1:
        from uvicorn.supervisors import Multiprocess

        os.environ[SOURCE_VARIABLE] = source.encode()
        # uvicorn.run's own way with workers, with a configuration that carries the bounds
        config = uvicorn_config("llmroute.server.run:worker_app", server, factory=True,
                                workers=server.workers)  # fmt: skip
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return 0
    app = create_app(router, server)
    settle_heap(router)
    uv = uvicorn.Server(uvicorn_config(app, server))
    with _signals_stop(uv):
        uv.run()
    if app.drained:
        return 0
    logger.warning("the shutdown did not let every request finish: exit status 1")
    return 1


@contextlib.contextmanager
def _signals_stop(uv: uvicorn.Server) -> Iterator[None]:
    """While `uv` runs, let SIGINT and SIGTERM only ask it to stop, so that `start` returns.

    uvicorn handles both signals itself while it serves (a graceful shutdown),
    then puts back the handlers it found and raises the signal again, to let
    them end the process: Python's defaults would die of SIGTERM (status -15,
    143 in a shell) or of a KeyboardInterrupt (a traceback, status -2) however
    cleanly it drained. The handlers set here are the ones uvicorn finds, and
    raising the signal again only repeats the stop request it already carried
    out. (A signal just before uvicorn takes over stops it as soon as it has
    started.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only; uvicorn leaves them alone too
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        uv.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def setup_logging() -> None:
    """Send the ``llmroute`` loggers' records to stderr, as uvicorn does its own."""
    root = logging.getLogger("llmroute")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s:%(padding)s%(message)s"))
        handler.addFilter(_pad)
        handler.addFilter(_escape_arguments)
        root.addHandler(handler)
        root.setLevel(logging.INFO)


def _escape_arguments(record: logging.LogRecord) -> bool:
    """Escape control characters in a record's arguments: they carry what clients and
    upstreams chose (paths, model names, error text), and a newline there would forge a
    log line. The message format itself is ours and keeps its line breaks."""
    args = record.args
    if isinstance(args, tuple) and any(isinstance(a, str) for a in args):
        record.args = tuple(printable(a) if isinstance(a, str) else a for a in args)
    return True


def _pad(record: logging.LogRecord) -> bool:
    record.padding = " " * max(1, 9 - len(record.levelname))
    return True
