"""A small therapeutic-text-adventure game service: FastAPI over SQLAlchemy, cached by tta-cache.

Sessions, the characters a player talks to, the choices that move the story and the player's
emotional state, and therapeutic progress. The data layer is the demo's
(:mod:`tta_cache.demo.game`): decorated loaders, and writers whose ``@invalidates`` run inside
their database transaction and reach Redis after the commit (:func:`tta_cache.sqlalchemy.bind`).
The read routes are cached as responses too (:class:`tta_cache.asgi.CacheMiddleware`), tagged
from their path parameters, so a choice invalidates the loaders' entries and the responses alike.

Configuration (environment, or :func:`create_app`'s arguments):

- ``DATABASE_URL``: default ``sqlite:///tta_service.sqlite3``; ``postgresql+psycopg://...`` works;
- ``REDIS_URL``: default none (each process has only its in-process tier: use Redis with more
  than one worker);
- ``TTA_CACHE=off``: no cache at all (the loaders' functions called directly, no middleware),
  to compare;
- ``TTA_SEED_PLAYERS=N``: create the tables and seed N players at start-up (a single worker;
  with several, seed first: ``python -m examples.tta_service.app seed N``).

Run: ``uvicorn examples.tta_service.app:app --workers 2`` from the repository root.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import tta_cache as tc
from tta_cache.asgi import CacheMiddleware, Rule
from tta_cache.demo.game import Game, NotFound
from tta_cache.demo.schema import Database
from tta_cache.demo.world import OPTIONS

RESPONSE_TTL = 30.0
RULES = [
    Rule("/sessions/{session_id}", tags=("session:{session_id}",), ttl=RESPONSE_TTL),
    Rule("/sessions/{session_id}/narrative", tags=("session:{session_id}",), ttl=RESPONSE_TTL),
    Rule(
        "/sessions/{session_id}/characters/{character_id}",
        tags=("session:{session_id}", "character:{character_id}"),
        ttl=RESPONSE_TTL,
    ),
    Rule("/users/{user_id}/emotional", tags=("user:{user_id}",), ttl=RESPONSE_TTL),
    Rule("/users/{user_id}/progress", tags=("therapeutic:{user_id}",), ttl=RESPONSE_TTL),
]


class Choice(BaseModel):
    character_id: str
    option: int


@dataclass
class Service:
    """What the routes use: the game (loaders and writers) and whether the cache is on."""

    db: Database
    cache: tc.Cache
    game: Game
    cached: bool

    def loader(self, name: str) -> Any:
        load = getattr(self.game, name)
        return load if self.cached else load.uncached


def create_app(
    database_url: str | None = None,
    redis_url: str | None = None,
    *,
    cache_on: bool | None = None,
    seed_players: int | None = None,
) -> FastAPI:
    """The service; ``None`` arguments come from the environment (see the module docstring)."""
    env = os.environ
    url = database_url or env.get("DATABASE_URL", "sqlite:///tta_service.sqlite3")
    redis_url = redis_url or env.get("REDIS_URL") or None
    cached = cache_on if cache_on is not None else env.get("TTA_CACHE", "on") != "off"
    players = seed_players if seed_players is not None else int(env.get("TTA_SEED_PLAYERS", "0"))
    db = Database(url)
    if players:
        db.create(players)
    cache = tc.Cache(redis_url, namespace="tta-service", ttl={"http": RESPONSE_TTL})
    service = Service(db, cache, Game(cache, db), cached)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await cache.aclose()
        db.dispose()

    app = FastAPI(title="TTA game service", lifespan=lifespan)
    app.state.service = service

    def found(load: str, *args: str) -> Any:
        try:
            return service.loader(load)(*args)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    # Sync routes: FastAPI runs them in its thread pool (the data layer is sync SQLAlchemy).
    @app.get("/sessions/{session_id}")
    def get_session(session_id: str) -> Any:
        return found("load_session", session_id)

    @app.get("/sessions/{session_id}/narrative")
    def get_narrative(session_id: str) -> Any:
        return found("load_narrative", session_id)

    @app.get("/sessions/{session_id}/characters/{character_id}")
    def get_character(session_id: str, character_id: str) -> Any:
        user = found("load_session", session_id).user_id
        return found("load_character", session_id, character_id, user)

    @app.get("/users/{user_id}/emotional")
    def get_emotional(user_id: str) -> Any:
        return found("load_emotional", user_id)

    @app.get("/users/{user_id}/progress")
    def get_progress(user_id: str) -> Any:
        return found("load_progress", user_id)

    @app.post("/sessions/{session_id}/choices")
    def post_choice(session_id: str, choice: Choice) -> dict[str, int]:
        """Make a choice: one transaction; its invalidations are sent once it has committed."""
        try:
            user = service.game.load_session.uncached(session_id).user_id
            written = service.game.make_choice(user, session_id, choice.character_id, choice.option)
            gain = OPTIONS[choice.option][3]
            if gain > 0:
                written.update(service.game.record_progress(user, gain))
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        return written

    @app.get("/stats")
    def stats() -> dict[str, Any]:
        """This worker's figures (not cached): its pid, SQL statements run, cache and HTTP."""
        middleware = getattr(app.state, "cache_middleware", None)
        return {
            "pid": os.getpid(),
            "cache": "on" if cached else "off",
            "queries": db.queries,
            "loads": service.game.loads,
            "http": dict(middleware.counts) if middleware is not None else {},
            "hit_rate": cache.stats()["hit_rate"],
        }

    if cached:
        app.add_middleware(CacheMiddleware, cache=cache, rules=RULES)
        _remember_middleware(app)
    return app


def _remember_middleware(app: FastAPI) -> None:
    """Keep the CacheMiddleware instance once Starlette builds the stack (for ``/stats``)."""
    build = app.build_middleware_stack

    def building() -> Any:
        stack = build()
        node = stack
        while node is not None:
            if isinstance(node, CacheMiddleware):
                app.state.cache_middleware = node
                break
            node = getattr(node, "app", None)
        return stack

    app.build_middleware_stack = building  # type: ignore[method-assign]


def __getattr__(name: str) -> Any:
    """``app`` is built on first access, so importing this module configures nothing."""
    if name == "app":
        value = create_app()
        globals()["app"] = value
        return value
    raise AttributeError(name)


if __name__ == "__main__":  # python -m examples.tta_service.app seed N
    if sys.argv[1:2] == ["seed"]:
        players = int(sys.argv[2]) if len(sys.argv) > 2 else 100
        database = Database(os.environ.get("DATABASE_URL", "sqlite:///tta_service.sqlite3"))
        database.create(players)
        database.dispose()
        print(f"seeded {players} players into {database.url}")
    else:
        raise SystemExit("usage: python -m examples.tta_service.app seed [players]")
