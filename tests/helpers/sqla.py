"""A one-table database for the transaction tests, its cached loader, and a reader process.

The table ``moods`` holds one row per session with a ``version`` column that every write moves
by one: the value a loader returns *is* the version of the row it read, so a read is stale
exactly when it returns a version below the committed one.

:class:`Reader` is a real OS process (``spawn``) with its own :class:`tta_cache.Cache` on the same
Redis and its own SQLAlchemy engine on the same database. The test drives it step by step
through a pipe, so the interleaving with the writer is exact, with no sleeps:
``read(wait_for)`` first waits until the reader's tag map holds at least that version of the tag
(the writer's invalidation has reached it), then reads through the cache; ``fresh()`` reads once
through a new Cache (empty L1, a tag map fetched from Redis): what any process would read from
Redis now.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Integer, String, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import tta_cache as tc

SESSION = "s1"
TAG = f"session:{SESSION}"


class Base(DeclarativeBase):
    pass


class Mood(Base):
    __tablename__ = "moods"

    session_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    mood: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)


def sqlite_transactions(engine: Engine) -> Engine:
    """SQLAlchemy's recipe for pysqlite: let SQLAlchemy emit BEGIN (the driver's own handling
    does not, before a SAVEPOINT, and RELEASE would then commit). Returns ``engine``."""
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

    return engine


def sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+psycopg_async", "+psycopg")


def async_url(url: str) -> str:
    if url.startswith("sqlite:"):
        return url.replace("sqlite:", "sqlite+aiosqlite:", 1)
    return url


def seed(url: str) -> None:
    """Create the table (WAL journal on SQLite: readers never wait for the writer) and one row
    at version 1."""
    engine = create_engine(sync_url(url))
    try:
        if engine.dialect.name == "sqlite":
            with engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        with engine.begin() as conn:
            row = {"session_id": SESSION, "mood": "calm", "version": 1}
            conn.execute(Mood.__table__.insert(), row)
    finally:
        engine.dispose()


def committed_version(url: str) -> int:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(Mood.version)).scalar_one())
    finally:
        engine.dispose()


def make_loader(cache: tc.Cache, engine: Engine) -> Callable[[str], int]:
    """The cached read of a session's row version (its own connection, outside any transaction
    of the caller's)."""

    @cache.cached(kind="session", tags=("session:{session_id}",))
    def load_version(session_id: str) -> int:
        with engine.connect() as conn:
            stmt = select(Mood.version).where(Mood.session_id == session_id)
            return int(conn.execute(stmt).scalar_one())

    return load_version


def _reader_main(url: str, redis_url: str, namespace: str, conn: Any) -> None:
    engine = create_engine(sync_url(url))
    cache = tc.Cache(redis_url, namespace=namespace)
    try:
        if not cache.wait_ready(15.0):
            raise RuntimeError("reader: invalidation channel did not come up")
        load = make_loader(cache, engine)
        conn.send("ready")
        while True:
            command, arg = conn.recv()
            if command == "stop":
                break
            if command == "read":
                if arg is not None:
                    deadline = time.monotonic() + 10.0
                    while (cache.engine.versions.get(TAG) or 0) < arg:
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"reader: never heard of version {arg} of {TAG}")
                        time.sleep(0.001)
                conn.send(load(SESSION))
            elif command == "fresh":
                with tc.Cache(redis_url, namespace=namespace) as fresh:
                    fresh.wait_ready(15.0)
                    conn.send(make_loader(fresh, engine)(SESSION))
    except BaseException as exc:
        conn.send(("error", repr(exc)))
        raise
    finally:
        cache.close()
        engine.dispose()


class Reader:
    """The other process: ``read()``, ``read(wait_for=version)``, ``fresh()``."""

    def __init__(self, url: str, redis_url: str, namespace: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_reader_main, args=(url, redis_url, namespace, child), daemon=True
        )
        self.proc.start()
        child.close()
        self._expect("ready")

    def _answer(self) -> Any:
        if not self.conn.poll(60):
            raise RuntimeError("reader did not answer")
        answer = self.conn.recv()
        if isinstance(answer, tuple) and answer[:1] == ("error",):
            raise RuntimeError(f"reader failed: {answer[1]}")
        return answer

    def _expect(self, what: str) -> None:
        answer = self._answer()
        assert answer == what, answer

    def read(self, wait_for: int | None = None) -> int:
        self.conn.send(("read", wait_for))
        return int(self._answer())

    def fresh(self) -> int:
        self.conn.send(("fresh", None))
        return int(self._answer())

    def stop(self) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.conn.send(("stop", None))
        self.proc.join(20)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        assert self.proc.exitcode == 0, self.proc.exitcode


@contextlib.contextmanager
def reader(url: str, redis_url: str, namespace: str) -> Iterator[Reader]:
    r = Reader(url, redis_url, namespace)
    try:
        yield r
    finally:
        r.stop()
