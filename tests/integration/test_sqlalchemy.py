"""``tta_cache.sqlalchemy.bind`` in one process: what a transaction that has written may store,
which context a transaction belongs to, per-key invalidation, Redis down after the commit (I8),
failed commits, and the local-only cache. Real SQLite files and real Redis throughout; the
cross-process race is in ``test_sqlalchemy_race.py``."""

from __future__ import annotations

import asyncio
import contextvars
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

import tta_cache as tc
from helpers.proxy import TcpProxy
from helpers.sqla import SESSION, TAG, Mood, async_url, committed_version, seed, sqlite_transactions
from tta_cache.sqlalchemy import Binding, bind


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'tx.sqlite3'}"
    seed(url)
    return url


@pytest.fixture
def maker(url: str) -> Iterator[sessionmaker[Session]]:
    engine = sqlite_transactions(create_engine(url))
    yield sessionmaker(engine, expire_on_commit=False)
    engine.dispose()


class Loader:
    """A cached read of the row's version that counts its computations; ``gate`` (when set)
    makes the next computation wait for it."""

    def __init__(self, cache: tc.Cache, url: str) -> None:
        self.engine = create_engine(url)
        self.computed = 0
        self.entered = threading.Event()
        self.gate: threading.Event | None = None

        @cache.cached(kind="session", tags=("session:{session_id}",))
        def load(session_id: str) -> int:
            self.computed += 1
            self.entered.set()
            if self.gate is not None:
                assert self.gate.wait(10)
            with self.engine.connect() as conn:
                stmt = select(Mood.version).where(Mood.session_id == session_id)
                return int(conn.execute(stmt).scalar_one())

        self.load = load

    def close(self) -> None:
        self.engine.dispose()


def namespace() -> str:
    return f"tx-{secrets.token_hex(4)}"


def set_version(session: Session, version: int) -> None:
    row = session.get(Mood, SESSION)
    assert row is not None
    row.version = version


@pytest.mark.parametrize(
    "how",
    ["flushed", "unflushed", "core-dml-first"],
)
def test_a_call_inside_a_transaction_that_has_written_is_computed_and_not_stored(
    redis_url: str, url: str, maker: sessionmaker[Session], how: str
) -> None:
    with tc.Cache(redis_url, namespace=namespace()) as cache:
        bind(cache, maker)
        loader = Loader(cache, url)
        with maker.begin() as session:
            if how == "core-dml-first":  # the first statement: before autobegin has happened
                session.execute(update(Mood).values(version=2))
            else:
                set_version(session, 2)
                if how == "flushed":
                    session.flush()
            assert loader.load(SESSION) == 1  # its own connection: the committed row
            assert loader.load(SESSION) == 1
            assert loader.computed == 2  # computed each time: nothing stored
        assert cache.stats()["transactions"]["fills_skipped"] == 2
        assert loader.load(SESSION) == 2  # committed (nothing was invalidated: it was not stored)
        assert loader.load(SESSION) == 2
        assert loader.computed == 3
        loader.close()


def test_a_transaction_that_has_only_read_stores_as_usual(
    redis_url: str, url: str, maker: sessionmaker[Session]
) -> None:
    with tc.Cache(redis_url, namespace=namespace()) as cache:
        bind(cache, maker)
        loader = Loader(cache, url)
        with maker.begin() as session:
            assert session.get(Mood, SESSION) is not None
            assert loader.load(SESSION) == 1
            assert loader.load(SESSION) == 1
        assert loader.computed == 1
        loader.close()


def test_a_computation_inside_a_writing_transaction_is_joined_by_no_other_caller(
    redis_url: str, url: str, maker: sessionmaker[Session]
) -> None:
    with tc.Cache(redis_url, namespace=namespace()) as cache:
        bind(cache, maker)
        loader = Loader(cache, url)
        loader.gate = threading.Event()
        got: dict[str, int] = {}

        def read(name: str) -> None:
            got[name] = loader.load(SESSION)

        with maker.begin() as session:
            set_version(session, 2)
            session.flush()
            # A thread started with a copy of this context belongs to the transaction: its
            # computation is held at the gate ...
            inside = threading.Thread(target=contextvars.copy_context().run, args=(read, "inside"))
            inside.start()
            assert loader.entered.wait(10)
            loader.entered.clear()
            # ... while a thread outside the transaction misses the same key: it must not join
            # that computation (it may see rows not committed) but compute its own.
            outside = threading.Thread(target=read, args=("outside",))
            outside.start()
            assert loader.entered.wait(10)
            loader.gate.set()
            inside.join(10)
            outside.join(10)
        assert got == {"inside": 1, "outside": 1}
        assert loader.computed == 2
        assert cache.stats()["transactions"]["fills_skipped"] == 1
        loader.close()


def test_only_the_context_that_began_the_transaction_defers_its_invalidations(
    redis_url: str, url: str, maker: sessionmaker[Session]
) -> None:
    ns = namespace()
    with tc.Cache(redis_url, namespace=ns) as cache, redis.Redis.from_url(redis_url) as client:
        bind(cache, maker)
        with maker.begin() as session:
            set_version(session, 2)
            other = threading.Thread(target=cache.invalidate, kwargs={"tags": ["elsewhere:1"]})
            other.start()
            other.join(10)
            cache.invalidate(tags=[TAG])
            assert client.exists(f"{ns}:tag:elsewhere:1")  # another thread: sent at once
            assert not client.exists(f"{ns}:tag:{TAG}")  # this one: held
            assert cache.engine.versions.pending == {TAG}
        assert client.exists(f"{ns}:tag:{TAG}")
        assert not cache.engine.versions.pending


async def test_an_asyncio_task_outside_the_transaction_sends_at_once(
    redis_url: str, url: str
) -> None:
    ns = namespace()
    engine = create_async_engine(async_url(url))
    sqlite_transactions(engine.sync_engine)
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with tc.Cache(redis_url, namespace=ns) as cache:
        bind(cache, maker)
        client = redis.Redis.from_url(redis_url)
        began, sent = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with maker.begin() as session:
                row = await session.get(Mood, SESSION)
                assert row is not None
                row.version = 2
                await cache.ainvalidate(tags=[TAG])
                began.set()
                await sent.wait()
                assert not client.exists(f"{ns}:tag:{TAG}")

        async def other() -> None:
            await began.wait()
            await cache.ainvalidate(tags=["elsewhere:1"])
            assert client.exists(f"{ns}:tag:elsewhere:1")
            sent.set()

        await asyncio.gather(writer(), other())
        assert client.exists(f"{ns}:tag:{TAG}")
        assert committed_version(url) == 2
        client.close()
    await engine.dispose()


def test_a_per_call_invalidation_is_held_too(
    redis_url: str, url: str, maker: sessionmaker[Session]
) -> None:
    with (
        tc.Cache(redis_url, namespace=namespace()) as cache,
        redis.Redis.from_url(redis_url) as client,
    ):
        bind(cache, maker)
        loader = Loader(cache, url)
        assert loader.load(SESSION) == 1
        key = loader.load.cache_key(SESSION)
        with maker.begin() as session:
            set_version(session, 2)
            loader.load.invalidate(SESSION)
            assert client.exists(key)  # not deleted in Redis before the commit ...
            assert loader.load(SESSION) == 1  # ... and neither served nor stored here
            assert loader.computed == 2
        assert not client.exists(key)
        assert loader.load(SESSION) == 2
        assert loader.computed == 3
        loader.close()


def test_redis_down_after_the_commit_queues_the_invalidation_and_serves_nothing_it_covers(
    redis_proxy: TcpProxy, url: str, maker: sessionmaker[Session]
) -> None:
    ns = namespace()
    with tc.Cache(redis_proxy.url, namespace=ns, on_error="raise", op_timeout=0.2) as cache:
        assert cache.wait_ready(10)
        bind(cache, maker)
        loader = Loader(cache, url)
        assert loader.load(SESSION) == 1
        with maker.begin() as session:
            set_version(session, 2)
            session.flush()
            cache.invalidate(tags=[TAG])
            redis_proxy.refuse()
        # The commit succeeded and said so, though the send failed (on_error="raise" or not).
        assert committed_version(url) == 2
        assert cache.engine.queued == 1
        assert cache.engine.versions.pending == {TAG}
        redis_proxy.heal()
        deadline = threading.Event()
        for _ in range(1000):
            if not cache.engine.queued:
                break
            deadline.wait(0.01)
        assert cache.engine.queued == 0, "the queued invalidation was never taken"
        assert loader.load(SESSION) == 2
        loader.close()


def test_a_commit_that_fails_sends_its_invalidations_anyway(
    redis_url: str, url: str, maker: sessionmaker[Session]
) -> None:
    ns = namespace()
    with tc.Cache(redis_url, namespace=ns) as cache, redis.Redis.from_url(redis_url) as client:
        bind(cache, maker)
        session = maker()
        session.begin()
        session.execute(update(Mood).values(version=2))
        cache.invalidate(tags=[TAG])
        session.add(Mood(session_id=SESSION, mood="duplicate", version=9))  # fails at flush
        with pytest.raises(IntegrityError):
            session.commit()
        session.close()
        assert committed_version(url) == 1
        # The outcome of a failed COMMIT may be unknown: an extra invalidation is harmless.
        assert client.exists(f"{ns}:tag:{TAG}")
        assert not cache.engine.versions.pending


@pytest.mark.parametrize("bound", [False, True], ids=["unbound", "bound"])
def test_a_local_only_cache_keeps_threads_from_caching_rows_not_committed(
    url: str, maker: sessionmaker[Session], bound: bool
) -> None:
    with tc.Cache() as cache:
        if bound:
            bind(cache, maker)
        loader = Loader(cache, url)
        assert loader.load(SESSION) == 1
        with maker.begin() as session:
            set_version(session, 2)
            session.flush()
            cache.invalidate(tags=[TAG])
            other = threading.Thread(target=loader.load, args=(SESSION,))  # no transaction
            other.start()
            other.join(10)
        assert committed_version(url) == 2
        # Unbound, the other thread cached version 1 under the new version: served stale.
        assert loader.load(SESSION) == (2 if bound else 1)
        loader.close()


def test_unbind_stops_deferring(redis_url: str, url: str, maker: sessionmaker[Session]) -> None:
    ns = namespace()
    with tc.Cache(redis_url, namespace=ns) as cache, redis.Redis.from_url(redis_url) as client:
        binding = bind(cache, maker)
        assert isinstance(binding, Binding)
        binding.unbind()
        with maker.begin() as session:
            set_version(session, 2)
            cache.invalidate(tags=[TAG])
            assert client.exists(f"{ns}:tag:{TAG}")


def test_binding_an_async_sessionmaker_binds_its_sessions_only(url: str) -> None:
    engine = create_async_engine(async_url(url))
    bound_maker = async_sessionmaker(engine)
    other_maker = async_sessionmaker(engine)
    with tc.Cache() as cache:
        bind(cache, bound_maker)

        async def body() -> tuple[bool, bool]:
            async with bound_maker.begin() as s1:
                await s1.execute(insert(Mood).values(session_id="s2", mood="calm", version=1))
                mine = cache.engine.deferral.current() is not None
            async with other_maker.begin() as s2:
                await s2.execute(insert(Mood).values(session_id="s3", mood="calm", version=1))
                theirs = cache.engine.deferral.current() is not None
            await engine.dispose()
            return mine, theirs

        assert asyncio.run(body()) == (True, False)


def test_bind_refuses_what_is_not_a_session_factory() -> None:
    with tc.Cache() as cache, pytest.raises(TypeError, match="sessionmaker"):
        bind(cache, object())


def test_bind_takes_session_classes_and_instances(url: str) -> None:
    class MySession(Session):
        pass

    class MyAsyncSession(AsyncSession):
        sync_session_class = MySession

    engine = create_engine(url)
    with tc.Cache() as cache:
        for target in (MySession, MyAsyncSession, MySession(engine)):
            bind(cache, target).unbind()
    engine.dispose()


def test_a_send_that_fails_for_any_reason_after_the_commit_is_queued_not_lost(
    redis_url: str, url: str, maker: sessionmaker[Session]
) -> None:
    broken = threading.Event()

    def bump_breaks(op: Any, call_next: Any) -> Any:
        if op.name == "bump" and not broken.is_set():
            broken.set()
            raise RuntimeError("a bug in a middleware")
        return call_next()

    ns = namespace()
    with (
        tc.Cache(redis_url, namespace=ns, middleware=[bump_breaks]) as cache,
        redis.Redis.from_url(redis_url) as client,
    ):
        assert cache.wait_ready(10)
        bind(cache, maker)
        with maker.begin() as session:
            set_version(session, 2)
            cache.invalidate(tags=[TAG])
        assert broken.is_set()
        assert committed_version(url) == 2  # the commit was not failed by it
        pause = threading.Event()
        for _ in range(1000):  # the channel thread retries the queue
            if client.exists(f"{ns}:tag:{TAG}") and not cache.engine.queued:
                break
            pause.wait(0.01)
        assert client.exists(f"{ns}:tag:{TAG}")
        assert not cache.engine.versions.pending
