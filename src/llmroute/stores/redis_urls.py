"""Which Redis a URL names (one server, a Cluster, or a master behind Sentinel), and its client.

Three forms, the first as redis-py reads it, the other two as the ``limits``
library, LangChain and the Redis-Sentinel-Url package write them:

- ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS,
  ``unix:///path/redis.sock``): one Redis server.
- ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis
  Cluster, found from any of the nodes listed (no database: a cluster has
  only 0). Commands go to the master of their key's slot.
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``:
  the master Sentinel names `service`, asked of the sentinels listed (port
  26379 by default), and asked again when a connection to it fails, so a
  failover moves every client to the new master. The credentials are the
  Redis servers'; the sentinels are reached without them.

Every client built here has the same bounds (`RedisConnection` adds the outage
breaker): each socket operation times out after `timeout`, and nothing is
retried, by redis-py's connections or by its cluster client.

Parsing (`parse_redis_url`) imports nothing, so configuration checks a URL
without redis-py installed; `open_redis` imports redis-py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

__all__ = [
    "CLUSTER_SCHEME",
    "REDIS_SCHEMES",
    "SENTINEL_SCHEME",
    "OpenedRedis",
    "RedisUrl",
    "SentinelMaster",
    "open_redis",
    "parse_redis_url",
]

CLUSTER_SCHEME = "redis+cluster://"
SENTINEL_SCHEME = "redis+sentinel://"
#: The URL prefixes that name a Redis (any other backend URL is not one).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", CLUSTER_SCHEME, SENTINEL_SCHEME)
#: The most nodes (or sentinels) one URL may list.
MAX_NODES = 64
_DEFAULT_PORTS = {"cluster": 6379, "sentinel": 26379}
#: How long (seconds) the client of a former master is kept for the commands still on it.
RETIRED_FOR = 60.0


@dataclass(frozen=True, slots=True)
class RedisUrl:
    """A parsed Redis URL: its kind, and for a cluster or Sentinel the parts redis-py needs."""

    kind: Literal["server", "cluster", "sentinel"]
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = None
    service: str = ""
    db: int = 0


def parse_redis_url(url: str) -> RedisUrl:
    """The Redis `url` names; ValueError saying what is wrong with a malformed one."""
    if url.startswith(CLUSTER_SCHEME):
        kind: Literal["cluster", "sentinel"] = "cluster"
        rest = url.removeprefix(CLUSTER_SCHEME)
    elif url.startswith(SENTINEL_SCHEME):
        kind = "sentinel"
        rest = url.removeprefix(SENTINEL_SCHEME)
    elif url.startswith(REDIS_SCHEMES):
        return RedisUrl("server", url)
    else:
        raise ValueError(f"not a Redis URL: {url!r}")
    if "?" in rest or "#" in rest:
        raise ValueError(f"{url!r}: query parameters are not read from a {kind} URL")
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        credentials, _, netloc = netloc.rpartition("@")
        name, colon, secret = credentials.partition(":")
        username = unquote(name) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_node(part, _DEFAULT_PORTS[kind], url) for part in netloc.split(","))
    if len(nodes) > MAX_NODES:
        raise ValueError(f"{url!r}: more than {MAX_NODES} nodes")
    parts = [p for p in path.split("/") if p] if path else []
    if kind == "cluster":
        if parts not in ([], ["0"]):
            raise ValueError(f"{url!r}: a Redis Cluster has no database but 0 (no path)")
        return RedisUrl(kind, url, nodes, username, password)
    if not parts or len(parts) > 2:
        raise ValueError(
            f"{url!r}: expected redis+sentinel://host:port[,host:port...]/service[/db]"
        )
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"{url!r}: the database must be a number, got {parts[1]!r}")
        db = int(parts[1])
    return RedisUrl(kind, url, nodes, username, password, unquote(parts[0]), db)


def _node(text: str, default_port: int, url: str) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` as a host and a port."""
    host, port = text, ""
    if text.startswith("["):
        host, _, after = text[1:].partition("]")
        if after and not after.startswith(":"):
            raise ValueError(f"{url!r}: cannot read the node {text!r}")
        port = after[1:]
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    if not host or (port and not port.isdigit()) or not 0 < int(port or default_port) < 65536:
        raise ValueError(f"{url!r}: expected host:port for each node, got {text!r}")
    return host, int(port or default_port)


@dataclass(frozen=True, slots=True)
class OpenedRedis:
    """A redis-py asyncio client and how to close everything it opened; for Sentinel, the
    `SentinelMaster` that replaces the client when the sentinels name another master."""

    client: Any
    cluster: bool
    aclose: Callable[[], Coroutine[Any, Any, None]]
    sentinel: SentinelMaster | None = None


class SentinelMaster:
    """The master Sentinel names, followed: `follow` asks the sentinels, and when they name
    another master, `client` becomes a new client for it.

    redis-py's Sentinel client asks the sentinels only when it opens a connection, and a
    connection stays with the old master until that fails. After a ``SENTINEL FAILOVER``
    the old master keeps taking writes until the sentinels demote it (up to their 10 s
    INFO period), and every write it takes is lost when it resynchronises from the new
    one. Following the sentinels bounds that window by how often `follow` runs.
    """

    def __init__(self, sentinel: Any, service: str, options: dict[str, Any]) -> None:
        self._sentinel = sentinel
        self._service = service
        self._options = options
        self.client: Any = self._new()
        #: The master's address when `follow` last asked (None before it has).
        self.address: tuple[str, int] | None = None
        # clients of former masters and when they were left, closed RETIRED_FOR later
        self._retired: list[tuple[float, Any]] = []

    def _new(self) -> Any:
        return self._sentinel.master_for(self._service, **self._options)

    async def follow(self) -> bool:
        """Ask the sentinels for the master; True when it moved (`client` is then new)."""
        now = time.monotonic()
        while self._retired and self._retired[0][0] < now - RETIRED_FOR:
            await self._retired.pop(0)[1].aclose()
        host, port = await self._sentinel.discover_master(self._service)
        address = (str(host), int(port))
        moved = self.address is not None and address != self.address
        self.address = address
        if moved:
            # the old client's commands in flight end on their own (each is bounded by its
            # timeout); closing it now would cut them mid-reply
            self._retired.append((now, self.client))
            self.client = self._new()
        return moved

    async def aclose(self) -> None:
        retired = [client for _, client in self._retired]
        self._retired.clear()
        for client in [*retired, self.client, *self._sentinel.sentinels]:
            await client.aclose()


def open_redis(target: RedisUrl, *, timeout: float, max_connections: int) -> OpenedRedis:
    """A client for `target` (connections open on first use): `timeout` on every socket
    operation, no retries. Needs redis-py (ImportError without it)."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    bounds: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if target.kind == "server":
        client = aioredis.Redis.from_url(target.url, max_connections=max_connections, **bounds)
        return OpenedRedis(client, False, client.aclose)
    credentials: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "cluster":
        import redis
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        if int(redis.__version__.split(".")[0]) < 6:
            # before redis-py 6, `retry` is each node's; the cluster's own retries are these
            bounds["cluster_error_retry_attempts"] = 0
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            max_connections=max_connections,  # per node
            **credentials,
            **bounds,
        )
        return OpenedRedis(cluster, True, cluster.aclose)
    from redis.asyncio.sentinel import Sentinel

    # untyped before redis-py 8.2
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=dict(bounds))  # type: ignore[no-untyped-call,unused-ignore]
    options = {"db": target.db, "max_connections": max_connections, **credentials, **bounds}
    master = SentinelMaster(sentinel, target.service, options)
    return OpenedRedis(master.client, False, master.aclose, master)
