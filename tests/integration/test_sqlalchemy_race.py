"""The stale read that an invalidation inside an open transaction causes, with two real OS
processes, a real database (a SQLite file; PostgreSQL when a server binary is found) and real
Redis: without ``bind()`` the other process caches the rows not committed yet under the new
versions and serves them after the commit; with it, never. Sync ``Session`` and
``AsyncSession``; rollbacks and savepoints.

The writer is this test process; the reader is a spawned process driven step by step
(``helpers.sqla.Reader``), so every interleaving is exact.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

import tta_cache as tc
from helpers.postgres import PostgresServer, find_postgres
from helpers.sqla import (
    SESSION,
    TAG,
    Mood,
    async_url,
    committed_version,
    reader,
    seed,
    sqlite_transactions,
    sync_url,
)
from tta_cache.sqlalchemy import bind

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database with one row at version 1: a SQLite file, or a database of its own on
    the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.sqlite3'}"
    else:
        pg: PostgresServer = request.getfixturevalue("postgres")
        url = pg.url(pg.create_database(f"race_{secrets.token_hex(4)}"))
    seed(url)
    return url


def redis_tag_version(redis_url: str, namespace: str) -> int | None:
    """The tag's version in Redis (None: never bumped): what the other processes will see."""
    with redis.Redis.from_url(redis_url) as client:
        raw = client.get(f"{namespace}:tag:{TAG}")
    return None if raw is None else int(raw)


class Writer:
    """This process's side: a cache, the database, and ``write(session)``, which moves the row to
    ``version`` and invalidates its tag through an ``@invalidates`` function."""

    def __init__(self, url: str, redis_url: str, *, is_async: bool) -> None:
        self.namespace = f"tx-{secrets.token_hex(4)}"
        self.redis_url = redis_url
        self.cache = tc.Cache(redis_url, namespace=self.namespace)
        assert self.cache.wait_ready(10.0)
        self.is_async = is_async
        if is_async:
            self.aengine = create_async_engine(async_url(url))
            sqlite_transactions(self.aengine.sync_engine)
            self.maker: Any = async_sessionmaker(self.aengine, expire_on_commit=False)

            @self.cache.invalidates(session="{session_id}")
            async def amood_changed(session_id: str) -> None:
                pass

            self.changed: Callable[..., Any] = amood_changed
        else:
            self.engine = sqlite_transactions(create_engine(sync_url(url)))
            self.maker = sessionmaker(self.engine, expire_on_commit=False)

            @self.cache.invalidates(session="{session_id}")
            def mood_changed(session_id: str) -> None:
                pass

            self.changed = mood_changed

    def version_in_redis(self) -> int | None:
        return redis_tag_version(self.redis_url, self.namespace)

    def local(self) -> int:
        """The tag's version in this process's map (after a bump: the one Redis returned)."""
        return self.cache.engine.versions.get(TAG) or 0

    async def write(self, session: Any, version: int) -> None:
        if self.is_async:
            row = await session.get(Mood, SESSION)
            row.version = version
            await session.flush()
            await self.changed(SESSION)
        else:
            row = session.get(Mood, SESSION)
            row.version = version
            session.flush()
            self.changed(SESSION)

    async def close(self) -> None:
        if self.is_async:
            await self.aengine.dispose()
            await self.cache.aclose()
        else:
            self.engine.dispose()
            self.cache.close()


async def begin(w: Writer, session: Any) -> Any:
    return await session.begin() if w.is_async else session.begin()


async def finish(w: Writer, tx: Any, *, commit: bool) -> None:
    step = tx.commit if commit else tx.rollback
    result = step()
    if w.is_async:
        await result


async def new_session(w: Writer) -> Any:
    return w.maker()


async def close_session(w: Writer, session: Any) -> None:
    result = session.close()
    if w.is_async:
        await result


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


API = pytest.mark.parametrize("is_async", [False, True], ids=["Session", "AsyncSession"])


@API
@pytest.mark.parametrize("bound", [False, True], ids=["unbound", "bound"])
def test_the_other_process_serves_the_rows_not_committed_yet_only_without_bind(
    database_url: str, redis_url: str, is_async: bool, bound: bool
) -> None:
    async def body() -> None:
        w = Writer(database_url, redis_url, is_async=is_async)
        if bound:
            bind(w.cache, w.maker)
        with reader(database_url, redis_url, w.namespace) as other:
            assert other.read() == 1  # cached in its L1 and in Redis
            before = w.version_in_redis()
            session = await new_session(w)
            tx = await begin(w, session)
            await w.write(session, 2)
            if bound:
                assert w.version_in_redis() == before  # held: Redis has heard nothing yet
                during = other.read()  # its L1 still serves the committed row: right
            else:
                assert w.version_in_redis() != before
                # It has heard of the invalidation, misses, and reads the rows: version 1 is
                # all it can see, and it caches that under the new tag version.
                during = other.read(wait_for=w.local())
            assert during == 1
            await finish(w, tx, commit=True)
            await close_session(w, session)
            assert committed_version(database_url) == 2
            if bound:
                # Sent after the commit: once it has heard of it, it reads version 2, and so
                # does any process reading through Redis.
                assert w.version_in_redis() != before
                assert other.read(wait_for=w.local()) == 2
                assert other.fresh() == 2
            else:
                # The problem: version 1 after the commit, in its L1 and in Redis for every
                # process, until the TTL.
                assert other.read() == 1
                assert other.fresh() == 1
        await w.close()

    run(body)


@API
def test_a_rollback_drops_the_held_invalidation_and_serves_the_cached_rows_again(
    database_url: str, redis_url: str, is_async: bool
) -> None:
    async def body() -> None:
        w = Writer(database_url, redis_url, is_async=is_async)
        bind(w.cache, w.maker)
        computed = []
        engine = create_engine(sync_url(database_url))

        @w.cache.cached(kind="session", tags=("session:{session_id}",))
        def here(session_id: str) -> int:
            computed.append(session_id)
            with engine.connect() as conn:
                return int(conn.execute(Mood.__table__.select()).one().version)

        with reader(database_url, redis_url, w.namespace) as other:
            assert other.read() == 1
            assert here(SESSION) == 1
            before = w.version_in_redis()
            session = await new_session(w)
            tx = await begin(w, session)
            await w.write(session, 2)
            assert here(SESSION) == 1  # not served from L1 while held: read from the rows
            assert len(computed) == 2
            await finish(w, tx, commit=False)
            await close_session(w, session)
            assert committed_version(database_url) == 1
            assert w.version_in_redis() == before  # dropped: never reached Redis
            assert here(SESSION) == 1
            assert len(computed) == 2  # the hold is gone: the cached entry is served again
            assert other.read() == 1
            assert other.fresh() == 1
            stats = w.cache.stats()["transactions"]
            assert stats["deferred"] == 1
            assert stats["dropped"] == 1
        engine.dispose()
        await w.close()

    run(body)


@API
def test_a_released_savepoint_rides_with_the_outer_transaction(
    database_url: str, redis_url: str, is_async: bool
) -> None:
    async def body() -> None:
        w = Writer(database_url, redis_url, is_async=is_async)
        bind(w.cache, w.maker)
        with reader(database_url, redis_url, w.namespace) as other:
            assert other.read() == 1
            before = w.version_in_redis()
            session = await new_session(w)
            tx = await begin(w, session)
            savepoint = await (session.begin_nested() if is_async else _sync(session.begin_nested))
            await w.write(session, 2)
            await finish(w, savepoint, commit=True)  # RELEASE SAVEPOINT
            assert w.version_in_redis() == before  # held until the outer one commits
            assert other.read() == 1
            await finish(w, tx, commit=True)
            await close_session(w, session)
            assert w.version_in_redis() != before
            assert other.read(wait_for=w.local()) == 2
            assert other.fresh() == 2
        await w.close()

    run(body)


@API
def test_a_rolled_back_savepoint_drops_its_invalidations_and_not_the_outer_ones(
    database_url: str, redis_url: str, is_async: bool
) -> None:
    async def body() -> None:
        w = Writer(database_url, redis_url, is_async=is_async)
        bind(w.cache, w.maker)
        with reader(database_url, redis_url, w.namespace) as other:
            assert other.read() == 1
            before = w.version_in_redis()
            # A savepoint rolled back inside a committed transaction: nothing is sent.
            session = await new_session(w)
            tx = await begin(w, session)
            savepoint = await (session.begin_nested() if is_async else _sync(session.begin_nested))
            await w.write(session, 2)
            await finish(w, savepoint, commit=False)  # ROLLBACK TO SAVEPOINT
            await finish(w, tx, commit=True)
            await close_session(w, session)
            assert committed_version(database_url) == 1
            assert w.version_in_redis() == before
            assert other.fresh() == 1
            # The outer transaction invalidated the same tag before the savepoint: that one
            # is still sent when it commits.
            session = await new_session(w)
            tx = await begin(w, session)
            await w.write(session, 3)
            savepoint = await (session.begin_nested() if is_async else _sync(session.begin_nested))
            await w.write(session, 4)
            await finish(w, savepoint, commit=False)
            assert w.cache.engine.versions.pending == {TAG}  # the outer one's hold remains
            await finish(w, tx, commit=True)
            await close_session(w, session)
            assert committed_version(database_url) == 3
            assert w.version_in_redis() != before
            assert other.read(wait_for=w.local()) == 3
            assert other.fresh() == 3
            assert not w.cache.engine.versions.pending
        await w.close()

    run(body)


@API
def test_a_released_savepoint_of_a_rolled_back_transaction_is_dropped(
    database_url: str, redis_url: str, is_async: bool
) -> None:
    async def body() -> None:
        w = Writer(database_url, redis_url, is_async=is_async)
        bind(w.cache, w.maker)
        before = w.version_in_redis()
        session = await new_session(w)
        tx = await begin(w, session)
        savepoint = await (session.begin_nested() if is_async else _sync(session.begin_nested))
        await w.write(session, 2)
        await finish(w, savepoint, commit=True)
        await finish(w, tx, commit=False)
        await close_session(w, session)
        assert committed_version(database_url) == 1
        assert w.version_in_redis() == before
        assert not w.cache.engine.versions.pending
        await w.close()

    run(body)


async def _sync(fn: Callable[[], Any]) -> Any:
    return fn()


def test_postgresql_is_tested_when_its_binaries_are_on_the_machine() -> None:
    bindir, why = find_postgres()
    if bindir is None:
        pytest.skip(why)
    assert (bindir / "initdb").exists()
