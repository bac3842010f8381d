"""Real Redis topologies for the tests, on loopback free ports in temporary folders.

- `start_cluster`: a Redis Cluster of three masters (the 16384 slots split in
  three by CLUSTER ADDSLOTSRANGE, joined by CLUSTER MEET), plus one replica of
  the master that holds the limits' slot (so a failover can be tested).
- `start_sentinel`: a master, its replica, and three sentinels watching it
  (quorum 2).

Each waits until the topology is ready (``cluster_state:ok`` everywhere and the
replica in sync; the sentinels seeing the replica). The setup talks to the
servers with redis-py's blocking client, not through llmroute.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

HOST = "127.0.0.1"
SERVICE = "llmroute-test"
#: The slot of the rate limits' hash tag with the default prefix (``{llmroute:rl}``).
LIMITS_TAG = "{llmroute:rl}"


def free_port() -> int:
    """A free port below 55536 whose cluster bus port (+10000) is free too."""
    while True:
        with socket.socket() as probe, socket.socket() as bus:
            probe.bind((HOST, 0))
            port = int(probe.getsockname()[1])
            if port >= 55536:
                continue
            try:
                bus.bind((HOST, port + 10000))
            except OSError:
                continue
            return port


def wait_for(what: str, ready: Callable[[], bool], seconds: float = 20.0) -> None:
    """Poll `ready` until it is true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Server:
    """One redis-server process (a data node or a sentinel)."""

    port: int
    folder: Path
    command: list[str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.command, cwd=self.folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(f"redis-server on port {self.port}", self.answers, 10)

    def answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} exited")
        with self.client() as client:
            return bool(client.ping())

    def client(self) -> redis.Redis:
        return redis.Redis(HOST, self.port, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster or the replicas."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def data_node(binary: str, root: Path, *extra: str) -> Server:
    port = free_port()
    folder = root / str(port)
    folder.mkdir()
    command = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no",
               "--repl-diskless-sync-delay", "0", "--logfile", "redis.log",
               "--dir", str(folder), *extra]  # fmt: skip
    return Server(port, folder, command)


def info(client: redis.Redis, section: str) -> dict[str, Any]:
    return client.info(section)  # type: ignore[no-any-return]


@dataclass
class ClusterSetup:
    """Three masters and a replica of the limits' master."""

    masters: list[Server]
    replica: Server
    url: str = ""
    nodes: list[Server] = field(default_factory=list)

    def primaries(self) -> list[Server]:
        """The nodes that are masters now (a failover changes them)."""
        found = []
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            with node.client() as client:
                if info(client, "replication")["role"] == "master":
                    found.append(node)
        return found

    def flush(self) -> None:
        for node in self.primaries():
            with node.client() as client:
                client.flushall()

    def node_of(self, key: str) -> Server:
        """The master serving `key`'s slot now (in the first master's view)."""
        with self.primaries()[0].client() as client:
            port = _owner(client, int(client.execute_command("CLUSTER", "KEYSLOT", key)))
        return next(node for node in self.nodes if node.port == port)

    def healthy(self) -> bool:
        """``cluster_state:ok`` on every live node."""
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            with node.client() as client:
                state = client.execute_command("CLUSTER", "INFO")
                text = state.decode() if isinstance(state, bytes) else str(state)
                if "cluster_state:ok" not in text:
                    return False
        return True

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _owner(client: redis.Redis, slot: int) -> int:
    """The port of the master that serves `slot`, in this node's view."""
    for start, end, master, *_replicas in client.execute_command("CLUSTER", "SLOTS"):
        if int(start) <= slot <= int(end):
            return int(master[1])
    raise LookupError(f"slot {slot} is not served")


def start_cluster(binary: str, root: Path) -> ClusterSetup:
    options = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
               "--cluster-node-timeout", "1500")  # fmt: skip
    masters = [data_node(binary, root, *options) for _ in range(3)]
    replica = data_node(binary, root, *options)
    setup = ClusterSetup(masters, replica, nodes=[*masters, replica])
    try:
        for node in setup.nodes:
            node.start()
        with masters[0].client() as first:
            for node in setup.nodes[1:]:
                first.execute_command("CLUSTER", "MEET", HOST, node.port)
        bounds = [0, 5461, 10923, 16384]
        for index, node in enumerate(masters):
            with node.client() as client:
                client.execute_command(
                    "CLUSTER", "ADDSLOTSRANGE", bounds[index], bounds[index + 1] - 1
                )
        wait_for("cluster_state:ok", setup.healthy)
        with masters[0].client() as first:
            slot = int(first.execute_command("CLUSTER", "KEYSLOT", LIMITS_TAG))
        owner = masters[next(i for i in range(3) if bounds[i] <= slot < bounds[i + 1])]
        with owner.client() as client:
            owner_id = client.execute_command("CLUSTER", "MYID")
        owner_id = owner_id.decode() if isinstance(owner_id, bytes) else owner_id

        def replicate() -> bool:  # once the replica has heard of the master
            with replica.client() as client:
                client.execute_command("CLUSTER", "REPLICATE", owner_id)
            return True

        def replicating() -> bool:
            with replica.client() as client:
                return bool(info(client, "replication").get("master_link_status") == "up")

        wait_for("the replica to know its master", replicate)
        wait_for("the cluster replica's sync", replicating)
        wait_for("cluster_state:ok with the replica", setup.healthy)
    except BaseException:
        setup.stop()
        raise
    setup.url = "redis+cluster://" + ",".join(f"{HOST}:{m.port}" for m in masters)
    return setup


@dataclass
class SentinelSetup:
    """A master, its replica and three sentinels (quorum 2)."""

    data: list[Server]
    sentinels: list[Server]
    url: str = ""

    def master(self) -> Server:
        """The data node the sentinels name master now."""
        with self.sentinels[0].client() as client:
            _host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return next(node for node in self.data if node.port == int(port))

    def replica(self) -> Server:
        master = self.master()
        return next(node for node in self.data if node is not master)

    def settled(self) -> bool:
        """One master, its replica in sync, and every sentinel agreeing on both."""
        master, replica = self.master(), self.replica()
        with master.client() as client:
            if info(client, "replication")["role"] != "master":
                return False
        with replica.client() as client:
            replication = info(client, "replication")
            if replication.get("master_port") != master.port:
                return False
            if replication.get("master_link_status") != "up":
                return False
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                _host, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                if int(port) != master.port:
                    return False
                replicas = client.execute_command("SENTINEL", "REPLICAS", SERVICE)
                known = [_fields(r) for r in replicas]
                if not any(
                    int(r["port"]) == replica.port and "s_down" not in r["flags"] for r in known
                ):
                    return False
        return True

    def flush(self) -> None:
        with self.master().client() as client:
            client.flushall()
            client.wait(1, 5000)  # the replica has it too

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop()


def _fields(flat: Any) -> dict[str, str]:
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def start_sentinel(binary: str, root: Path) -> SentinelSetup:
    master = data_node(binary, root)
    replica = data_node(binary, root, "--replicaof", HOST, "")
    replica.command[replica.command.index("--replicaof") + 2] = str(master.port)
    sentinels = []
    for _ in range(3):
        port = free_port()
        folder = root / f"sentinel-{port}"
        folder.mkdir()
        config = folder / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind {HOST}\n"
            f"sentinel monitor {SERVICE} {HOST} {master.port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        sentinels.append(Server(port, folder, [binary, str(config), "--sentinel"]))
    setup = SentinelSetup([master, replica], sentinels)
    try:
        for node in [master, replica, *sentinels]:
            node.start()
        wait_for("the sentinels to see the replica", setup.settled)
    except BaseException:
        setup.stop()
        raise
    nodes = ",".join(f"{HOST}:{s.port}" for s in sentinels)
    setup.url = f"redis+sentinel://{nodes}/{SERVICE}/0"
    return setup
