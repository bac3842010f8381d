"""A real PostgreSQL server for the tests: Debian's binaries, initialised into a temp folder.

`PostgresServer.start()` runs ``initdb`` into a fresh folder and starts ``postgres`` on a
free loopback port, with its unix socket in the same folder and trust authentication
(nothing listens beyond 127.0.0.1). PostgreSQL refuses to run as root, so when the tests
run as root (CI does) both commands run as the unprivileged ``nobody`` (Popen's `user`
and `group`), in a folder ``nobody`` owns outside pytest's private temp root.

`create_database()` clones the template database for one test: tests do not see each
other's rows.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PostgresServer", "find_bindir"]

#: The unprivileged user the server runs as when the tests run as root.
UNPRIVILEGED = "nobody"


def find_bindir() -> Path | None:
    """The folder holding ``initdb`` and ``postgres``: on PATH, from ``pg_config --bindir``,
    or Debian's ``/usr/lib/postgresql/<version>/bin`` (newest first); None if absent."""
    candidates: list[Path] = []
    initdb = shutil.which("initdb")
    if initdb is not None:
        candidates.append(Path(initdb).parent)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates += [Path(p) for p in debian]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """One running server: its folder, port and process."""

    bindir: Path
    folder: Path = field(default_factory=lambda: Path())
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    databases: int = 0
    #: Tests skip fsync (nothing here must survive a crash); a benchmark keeps the defaults.
    durable: bool = False

    @staticmethod
    def _as_owner() -> dict[str, Any]:
        """Popen's arguments that drop root for `UNPRIVILEGED` (none when not root)."""
        if os.geteuid() != 0:
            return {}
        return {
            "user": UNPRIVILEGED,
            "group": grp.getgrgid(pwd.getpwnam(UNPRIVILEGED).pw_gid).gr_name,
            "extra_groups": [],
        }

    def start(self) -> None:
        """initdb, then start the server and wait until it accepts connections."""
        self.folder = Path(tempfile.mkdtemp(prefix="llmroute-pg-"))
        data = self.folder / "data"
        if os.geteuid() == 0:
            shutil.chown(self.folder, UNPRIVILEGED)
        init = subprocess.run(
            [str(self.bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "llmroute",
             "-E", "UTF8", "--no-locale", "--no-sync"],
            capture_output=True, text=True, check=False, cwd=self.folder, **self._as_owner(),
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        self.port = _free_port()
        self.launch()

    def launch(self) -> None:
        """Start the server on the initialised folder and port; wait until it is ready."""
        data = self.folder / "data"
        log = (self.folder / "server.log").open("ab")
        self.process = subprocess.Popen(
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.folder), "-c", "max_connections=200",
             *([] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                        "-c", "full_page_writes=off"])],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.folder, **self._as_owner(),
        )  # fmt: skip
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                assert self.process is not None
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.folder / "server.log").read_text(errors="replace")
                    raise RuntimeError(f"postgres did not start: {exc}\n{log}") from exc
                time.sleep(0.05)

    def url(self, database: str) -> str:
        """The URL of `database` on this server."""
        return f"postgresql://llmroute@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database (a copy of template0's twin, template1): its URL."""
        import psycopg

        self.databases += 1
        name = f"test_{os.getpid()}_{self.databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template1')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop the database of `url` (its connections are ended first)."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, *, remove: bool = True) -> None:
        """Stop the server (smart shutdown, then kill) and remove its folder unless told not to
        (`launch` starts it again on the same data)."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)
