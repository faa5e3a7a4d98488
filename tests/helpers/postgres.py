"""A throwaway PostgreSQL server for the tests: ``initdb`` in a temporary directory, ``postgres``
on a free loopback port (never 5432, where the machine's own server may run), stopped by its PID.

The binaries are found on PATH or under ``/usr/lib/postgresql/*/bin``; :func:`find_postgres`
returns None (and why) when they are not there. PostgreSQL refuses to run as root: as root, the
cluster belongs to the ``postgres`` user (or ``nobody``) and its processes run as that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from .redis_server import free_port

HOST = "127.0.0.1"


def find_postgres() -> tuple[Path | None, str]:
    """(the directory holding ``initdb`` and ``postgres``, "") or (None, why not)."""
    candidates = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for bindir in candidates:
        if all(os.access(bindir / b, os.X_OK) for b in ("initdb", "postgres")):
            return bindir, ""
    return None, "no initdb/postgres binaries (PATH, /usr/lib/postgresql/*/bin)"


def _run_as() -> tuple[str, int, int] | None:
    """The (user, uid, gid) to run PostgreSQL as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return name, entry.pw_uid, entry.pw_gid
    raise RuntimeError("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


class PostgresServer:
    """``with PostgresServer() as pg: pg.url("mydb")``; ``pg.create_database(name)``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="tta-cache-pg-"))
        self.user = "tta"

    def _popen_kwargs(self) -> dict[str, Any]:
        who = _run_as()
        if who is None:
            return {}
        return {"user": who[1], "group": who[2], "extra_groups": []}

    def start(self) -> PostgresServer:
        who = _run_as()
        data = self.dir / "data"
        if who is not None:
            os.chown(self.dir, who[1], who[2])
        kwargs = self._popen_kwargs()
        subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                self.user,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.dir,
            **kwargs,
        )
        self.port = free_port()
        log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-c",
                f"listen_addresses={HOST}",
                "-c",
                f"unix_socket_directories={self.dir}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=100",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
            **kwargs,
        )
        log.close()
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log()}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "postgres.log").read_text(errors="replace")
        return ""

    def dsn(self, database: str) -> str:
        return f"host={HOST} port={self.port} user={self.user} dbname={database}"

    def url(self, database: str, driver: str = "psycopg") -> str:
        """A SQLAlchemy URL (``postgresql+<driver>://``)."""
        return f"postgresql+{driver}://{self.user}@{HOST}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)  # "fast" shutdown
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
