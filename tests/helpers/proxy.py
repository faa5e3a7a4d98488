"""A TCP proxy that injects faults between a client and a real redis-server.

Modes, switched at any time: pass-through (optionally with latency), blackhole (accept and read,
never forward nor answer), refuse (close new connections at once). ``cut()`` drops the current
connections. A thread per direction per connection keeps it simple; loopback traffic is small.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

from .redis_server import HOST, free_port

_PASS = "pass"
_BLACKHOLE = "blackhole"
_REFUSE = "refuse"


class TcpProxy:
    """Listens on 127.0.0.1:``port`` and forwards each connection to ``target_port``."""

    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self.target = (target_host, target_port)
        self._port = free_port()
        self._mode = _PASS
        self._latency = 0.0
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.connections_accepted = 0

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``: the proxied server as a Redis URL."""
        return f"redis://{HOST}:{self._port}/0"

    @property
    def active_connections(self) -> int:
        """Client connections currently open through the proxy."""
        with self._lock:
            return len(self._links)

    def start(self) -> TcpProxy:
        """Start listening; returns self."""
        listener = socket.create_server((HOST, self._port))
        # A short accept timeout lets stop() end the accept loop without a wake-up pipe.
        listener.settimeout(0.05)
        self._listener = listener
        self._closing.clear()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"proxy-accept-{self._port}", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Close the listener and every connection, and join all threads."""
        self._closing.set()
        if self._acceptor is not None:
            self._acceptor.join()
            self._acceptor = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for link in self._take_links():
            link.join()

    def set_latency(self, seconds: float) -> None:
        """Delay every forwarded chunk by ``seconds``, in both directions."""
        self._latency = seconds

    def blackhole(self) -> None:
        """Keep accepting and reading, never forward nor answer: clients hang until timeout."""
        self._mode = _BLACKHOLE

    def refuse(self) -> None:
        """Close every new connection as soon as it is accepted."""
        self._mode = _REFUSE

    def heal(self) -> None:
        """Back to plain pass-through: no latency, no blackhole, no refusal."""
        self._mode = _PASS
        self._latency = 0.0

    def cut(self) -> None:
        """Close all current connections now; new connections work as the mode says."""
        for link in self._take_links():
            link.join()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _take_links(self) -> list[_Link]:
        with self._lock:
            links, self._links = list(self._links), set()
        for link in links:
            link.shutdown()
        return links

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections_accepted += 1
            if self._mode == _REFUSE:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2.0)
            except OSError:
                if self._mode != _BLACKHOLE:
                    _reset(client)
                    continue
                upstream = None
            self._open_link(client, upstream)

    def _open_link(self, client: socket.socket, upstream: socket.socket | None) -> None:
        client.settimeout(None)
        if upstream is not None:
            upstream.settimeout(None)
        link = _Link(client, upstream)
        link.threads = [
            threading.Thread(target=self._pump, args=(link, client, upstream), daemon=True)
        ]
        if upstream is not None:
            link.threads.append(
                threading.Thread(target=self._pump, args=(link, upstream, client), daemon=True)
            )
        # Registered and started under the lock, so cut() never sees a link with unstarted threads.
        with self._lock:
            self._links.add(link)
            for thread in link.threads:
                thread.start()

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket | None) -> None:
        try:
            while data := source.recv(65536):
                if self._mode == _BLACKHOLE or sink is None:
                    continue
                if self._latency and self._closing.wait(self._latency):
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # Either side closing ends the pair, as a real network path would.
            with self._lock:
                self._links.discard(link)
            link.shutdown()
            link.release()


class _Link:
    """One proxied connection: the client socket, the upstream socket, and their pump threads."""

    def __init__(self, client: socket.socket, upstream: socket.socket | None) -> None:
        self.sockets = [sock for sock in (client, upstream) if sock is not None]
        self.threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._pumps_left = 2 if upstream is not None else 1

    def shutdown(self) -> None:
        # shutdown() wakes a thread blocked in recv(); close() from another thread would not.
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def release(self) -> None:
        with self._lock:
            self._pumps_left -= 1
            last = self._pumps_left == 0
        if last:
            for sock in self.sockets:
                sock.close()

    def join(self) -> None:
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join()


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, as a refusing host would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
