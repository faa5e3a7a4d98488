"""The TTA game's database, in SQLAlchemy: the tables, their seed, and a :class:`Database` (an
engine with a session factory for reads and one for writes, and a count of the SQL statements
run).

Every row has a ``version`` column that SQLAlchemy keeps (its ``version_id_col``): each UPDATE
moves it to the wall clock in microseconds, strictly above the version it replaces, and checks
it (a concurrent writer raises ``StaleDataError``, and :meth:`Database.write` retries). A value
loaded from a row carries that version as its ``last_updated`` instant (``world.at``), which is
what the demo's staleness check compares.

SQLite by default (a file; WAL, so readers never wait for the writer; ``BEGIN IMMEDIATE`` for
writes, so two writers queue instead of deadlocking); any URL SQLAlchemy takes otherwise
(``postgresql+psycopg://...``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Float, Integer, String, Text, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from .world import CHARACTERS, SCENES, now_us

__all__ = [
    "CharacterRow",
    "ChoiceRow",
    "Database",
    "EmotionRow",
    "ProgressRow",
    "SessionRow",
    "next_version",
    "sqlite_transactions",
]

T = TypeVar("T")


def next_version(current: int | None) -> int:
    """A row's next version: the clock in microseconds, above the one it replaces."""
    now = now_us()
    return now if current is None else max(now, current + 1)


class Base(DeclarativeBase):
    pass


class SessionRow(Base):
    __tablename__ = "tta_sessions"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64))
    scene: Mapped[str] = mapped_column(String(64))
    turn: Mapped[int] = mapped_column(Integer)
    created_us: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int] = mapped_column(BigInteger)
    __mapper_args__ = {  # noqa: RUF012 - read once by the mapper
        "version_id_col": version,
        "version_id_generator": next_version,
    }


class ChoiceRow(Base):
    __tablename__ = "tta_choices"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    turn: Mapped[int] = mapped_column(Integer, primary_key=True)
    choice_id: Mapped[str] = mapped_column(String(80))
    text: Mapped[str] = mapped_column(String(200))
    scene: Mapped[str] = mapped_column(String(64))
    made_us: Mapped[int] = mapped_column(BigInteger)


class CharacterRow(Base):
    __tablename__ = "tta_characters"

    session_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    character_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    mood: Mapped[str] = mapped_column(String(64))
    trust: Mapped[float] = mapped_column(Float)
    memory: Mapped[str] = mapped_column(Text)  # JSON list of the last five memories
    version: Mapped[int] = mapped_column(BigInteger)
    __mapper_args__ = {  # noqa: RUF012 - read once by the mapper
        "version_id_col": version,
        "version_id_generator": next_version,
    }


class EmotionRow(Base):
    __tablename__ = "tta_emotions"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id: Mapped[str] = mapped_column(String(64))
    emotion: Mapped[str] = mapped_column(String(32))
    intensity: Mapped[float] = mapped_column(Float)
    trigger: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(BigInteger)
    __mapper_args__ = {  # noqa: RUF012 - read once by the mapper
        "version_id_col": version,
        "version_id_generator": next_version,
    }


class ProgressRow(Base):
    __tablename__ = "tta_progress"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    grounding: Mapped[float] = mapped_column(Float)
    achievements: Mapped[str] = mapped_column(Text)  # JSON list
    version: Mapped[int] = mapped_column(BigInteger)
    __mapper_args__ = {  # noqa: RUF012 - read once by the mapper
        "version_id_col": version,
        "version_id_generator": next_version,
    }


def sqlite_transactions(engine: Engine, *, immediate: bool = False) -> Engine:
    """SQLAlchemy's recipe for pysqlite: SQLAlchemy emits ``BEGIN`` itself (the driver does not
    before a ``SAVEPOINT``, and a ``RELEASE`` would then commit); ``immediate`` takes the write
    lock at ``BEGIN`` (two writers then queue on the busy timeout instead of failing when one
    upgrades its read lock). No-op for other databases. Returns ``engine``."""
    if engine.dialect.name != "sqlite":
        return engine
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA busy_timeout = 30000")
        dbapi_connection.execute("PRAGMA journal_mode = WAL")  # kept by the file: once is enough

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


_COUNTED = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


class Database:
    """The game's database at ``url``: ``Session`` for reads, ``WriteSession`` for writes (the
    factory to ``bind()``), and ``queries``, the SQL statements this process has run through
    either (not ``BEGIN``/``COMMIT``)."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        sqlite = url.startswith("sqlite")
        options: dict[str, Any] = {} if sqlite else {"pool_size": pool_size, "max_overflow": 10}
        self.read_engine = sqlite_transactions(create_engine(url, **options))
        self.write_engine = sqlite_transactions(create_engine(url, **options), immediate=True)
        self.Session = sessionmaker(self.read_engine, expire_on_commit=False)
        self.WriteSession = sessionmaker(self.write_engine, expire_on_commit=False)
        self._lock = threading.Lock()
        self.queries = 0
        for engine in (self.read_engine, self.write_engine):
            event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip()[:6].upper().startswith(_COUNTED):
            with self._lock:
                self.queries += 1

    def create(self, players: int) -> None:
        """Create the tables and seed ``players`` players, each with a session at the first
        scene, every character, a calm emotional state and no progress."""
        Base.metadata.drop_all(self.write_engine)
        Base.metadata.create_all(self.write_engine)
        now = now_us()
        with self.WriteSession.begin() as session:
            for p in range(players):
                user, sid = f"player-{p}", f"session-{p}"
                session.add(
                    SessionRow(
                        session_id=sid,
                        user_id=user,
                        scene=SCENES[0],
                        turn=0,
                        created_us=now,
                        version=now,
                    )
                )
                for character in CHARACTERS:
                    session.add(
                        CharacterRow(
                            session_id=sid,
                            character_id=character,
                            mood="neutral",
                            trust=0.0,
                            memory="[]",
                            version=now,
                        )
                    )
                session.add(
                    EmotionRow(
                        user_id=user,
                        session_id=sid,
                        emotion="calm",
                        intensity=0.3,
                        trigger="",
                        version=now,
                    )
                )
                session.add(
                    ProgressRow(user_id=user, grounding=0.0, achievements="[]", version=now)
                )

    def write(self, body: Callable[[Session], T], attempts: int = 20) -> T:
        """Run ``body`` in a write transaction and commit; again (from a new transaction) if a
        concurrent writer moved a row's version first or the database was busy."""
        for attempt in range(attempts):
            try:
                with self.WriteSession.begin() as session:
                    return body(session)
            except (StaleDataError, OperationalError):
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self.Session() as session:
            yield session

    def dispose(self) -> None:
        self.read_engine.dispose()
        self.write_engine.dispose()
