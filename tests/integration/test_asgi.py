"""``tta_cache.asgi.CacheMiddleware`` on a real Starlette app and a real FastAPI app, through
httpx's ASGI transport, with a real Redis behind the cache: hits that do not run the route,
``304``, what is never cached, invalidation by tag, ``Vary``, streaming, ``Server-Timing``."""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse as FastJSON
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

import tta_cache as tc
from tta_cache.asgi import CacheMiddleware, Rule
from tta_cache.exceptions import TemplateError

MAX_BODY = 4096
RULES = [
    Rule("/sessions/{session_id}", tags=("session:{session_id}",), ttl=60),
    Rule("/greeting", ttl=60),
    Rule("/login", ttl=60),
    Rule("/missing", ttl=60),
    Rule("/private", ttl=60),
    Rule("/stream/{size}", ttl=60),
]


class World:
    """The state the routes read and how often each route ran."""

    def __init__(self) -> None:
        self.moods = {"s1": "calm", "s2": "hopeful"}
        self.ran: Counter[str] = Counter()


async def _chunks(size: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        n = min(1000, size - sent)
        yield b"x" * n
        sent += n


def starlette_app(cache: tc.Cache, world: World) -> Any:
    async def session(request: StarletteRequest) -> Response:
        world.ran["session"] += 1
        sid = request.path_params["session_id"]
        if request.method == "POST":
            world.moods[sid] = "anxious"
        return JSONResponse({"session": sid, "mood": world.moods[sid]})

    async def greeting(request: StarletteRequest) -> Response:
        world.ran["greeting"] += 1
        lang = request.headers.get("accept-language", "en")
        text = {"en": "hello", "fr": "bonjour"}.get(lang, "hello")
        return PlainTextResponse(text, headers={"Vary": "Accept-Language"})

    async def login(request: StarletteRequest) -> Response:
        world.ran["login"] += 1
        response = PlainTextResponse("welcome")
        response.set_cookie("sid", secrets.token_hex(4))
        return response

    async def missing(request: StarletteRequest) -> Response:
        world.ran["missing"] += 1
        return PlainTextResponse("no such thing", status_code=404)

    async def private(request: StarletteRequest) -> Response:
        world.ran["private"] += 1
        return PlainTextResponse("yours", headers={"Cache-Control": "private, max-age=60"})

    async def stream(request: StarletteRequest) -> Response:
        world.ran["stream"] += 1
        return StreamingResponse(_chunks(int(request.path_params["size"])))

    async def uncached(request: StarletteRequest) -> Response:
        world.ran["uncached"] += 1
        return PlainTextResponse("fresh")

    routes = [
        Route("/sessions/{session_id}", session, methods=["GET", "HEAD", "POST"]),
        Route("/greeting", greeting),
        Route("/login", login),
        Route("/missing", missing),
        Route("/private", private),
        Route("/stream/{size}", stream),
        Route("/uncached", uncached),
    ]
    middleware = [Middleware(CacheMiddleware, cache=cache, rules=RULES, max_body=MAX_BODY)]
    return Starlette(routes=routes, middleware=middleware)


def fastapi_app(cache: tc.Cache, world: World) -> Any:
    app = FastAPI()

    @app.api_route("/sessions/{session_id}", methods=["GET", "HEAD", "POST"])
    async def session(session_id: str, request: Request) -> Any:
        world.ran["session"] += 1
        if request.method == "POST":
            world.moods[session_id] = "anxious"
        return FastJSON({"session": session_id, "mood": world.moods[session_id]})

    @app.get("/greeting")
    async def greeting(request: Request) -> Response:
        world.ran["greeting"] += 1
        lang = request.headers.get("accept-language", "en")
        text = {"en": "hello", "fr": "bonjour"}.get(lang, "hello")
        return PlainTextResponse(text, headers={"Vary": "Accept-Language"})

    @app.get("/login")
    async def login() -> Response:
        world.ran["login"] += 1
        response = PlainTextResponse("welcome")
        response.set_cookie("sid", secrets.token_hex(4))
        return response

    @app.get("/missing")
    async def missing() -> Response:
        world.ran["missing"] += 1
        return PlainTextResponse("no such thing", status_code=404)

    @app.get("/private")
    async def private() -> Response:
        world.ran["private"] += 1
        return PlainTextResponse("yours", headers={"Cache-Control": "private, max-age=60"})

    @app.get("/stream/{size}")
    async def stream(size: int) -> Response:
        world.ran["stream"] += 1
        return StreamingResponse(_chunks(size))

    @app.get("/uncached")
    async def uncached() -> Response:
        world.ran["uncached"] += 1
        return PlainTextResponse("fresh")

    app.add_middleware(CacheMiddleware, cache=cache, rules=RULES, max_body=MAX_BODY)
    return app


@pytest.fixture(params=[starlette_app, fastapi_app], ids=["starlette", "fastapi"])
async def served(
    request: pytest.FixtureRequest, redis_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, tc.Cache, World]]:
    make: Callable[[tc.Cache, World], Any] = request.param
    cache = tc.Cache(redis_url, namespace=f"asgi-{secrets.token_hex(4)}")
    world = World()
    transport = httpx.ASGITransport(app=make(cache, world))
    async with httpx.AsyncClient(transport=transport, base_url="http://tta.test") as client:
        yield client, cache, world
    await cache.aclose()


TIMING = re.compile(r'^cache;dur=(\d+\.\d{3});desc="(hit|miss|bypass)"$')


def desc(response: httpx.Response) -> str:
    """The cache's ``Server-Timing`` description; fails if the header is missing or malformed."""
    ours = [v for v in response.headers.get_list("server-timing") if v.startswith("cache;")]
    assert len(ours) == 1, response.headers
    match = TIMING.match(ours[0])
    assert match, ours[0]
    return match.group(2)


async def test_a_hit_is_served_without_running_the_route(served: Any) -> None:
    client, _, world = served
    first = await client.get("/sessions/s1")
    second = await client.get("/sessions/s1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json() == {"session": "s1", "mood": "calm"}
    assert world.ran["session"] == 1
    assert (desc(first), desc(second)) == ("miss", "hit")
    assert first.headers["etag"] == second.headers["etag"]
    assert second.headers["content-type"] == "application/json"
    other = await client.get("/sessions/s2")  # another path parameter: another entry
    assert other.json()["mood"] == "hopeful"
    assert world.ran["session"] == 2
    query = await client.get("/sessions/s1?detail=1")  # another query: another entry
    assert query.json()["mood"] == "calm"
    assert world.ran["session"] == 3


async def test_if_none_match_gets_a_304_without_running_the_route(served: Any) -> None:
    client, _, world = served
    etag = (await client.get("/sessions/s1")).headers["etag"]
    again = await client.get("/sessions/s1", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert desc(again) == "hit"
    assert world.ran["session"] == 1
    weak = await client.get("/sessions/s1", headers={"If-None-Match": f'"other", W/{etag}'})
    assert weak.status_code == 304
    stale = await client.get("/sessions/s1", headers={"If-None-Match": '"not-it"'})
    assert stale.status_code == 200
    assert world.ran["session"] == 1


async def test_if_none_match_on_a_miss_runs_the_route_once_and_answers_304(served: Any) -> None:
    client, cache, world = served
    etag = (await client.get("/sessions/s1")).headers["etag"]
    await cache.ainvalidate(session="s1")
    again = await client.get("/sessions/s1", headers={"If-None-Match": etag})
    assert again.status_code == 304  # recomputed, and the same body
    assert desc(again) == "miss"
    assert world.ran["session"] == 2


@pytest.mark.parametrize("path", ["/login", "/missing", "/private"])
async def test_cookies_errors_and_private_responses_are_never_cached(
    served: Any, path: str
) -> None:
    client, _, world = served
    for _ in range(3):
        response = await client.get(path)
        assert desc(response) == "miss"
    assert world.ran[path.strip("/")] == 3


async def test_a_post_is_never_cached_and_runs_every_time(served: Any) -> None:
    client, _, world = served
    for _ in range(2):
        response = await client.post("/sessions/s1")
        assert response.status_code == 200
        assert desc(response) == "bypass"
    assert world.ran["session"] == 2


async def test_invalidating_a_tag_reaches_the_cached_responses(served: Any) -> None:
    client, cache, _ = served
    assert (await client.get("/sessions/s1")).json()["mood"] == "calm"
    await client.post("/sessions/s1")  # changes the mood; the route invalidates nothing itself
    assert (await client.get("/sessions/s1")).json()["mood"] == "calm"  # served from the cache
    await cache.ainvalidate(session="s1")
    response = await client.get("/sessions/s1")
    assert response.json()["mood"] == "anxious"
    assert desc(response) == "miss"
    assert (await client.get("/sessions/s2")).json()["mood"] == "hopeful"
    cache.invalidate(session="s2")  # the sync call reaches them as well
    assert desc(await client.get("/sessions/s2")) == "miss"


async def test_vary_keeps_one_entry_per_value_of_the_named_request_header(served: Any) -> None:
    client, _, world = served
    texts = []
    for lang in ("en", "fr", "en", "fr"):
        response = await client.get("/greeting", headers={"Accept-Language": lang})
        texts.append((response.text, desc(response)))
    assert texts == [("hello", "miss"), ("bonjour", "miss"), ("hello", "hit"), ("bonjour", "hit")]
    assert world.ran["greeting"] == 2


async def test_a_streamed_body_is_cached_below_the_bound_and_streamed_through_above_it(
    served: Any,
) -> None:
    client, _, world = served
    small = [await client.get(f"/stream/{MAX_BODY - 96}") for _ in range(2)]
    assert [len(r.content) for r in small] == [MAX_BODY - 96] * 2
    assert [desc(r) for r in small] == ["miss", "hit"]
    large = [await client.get(f"/stream/{MAX_BODY * 3}") for _ in range(2)]
    assert [r.content for r in large] == [b"x" * (MAX_BODY * 3)] * 2
    assert [desc(r) for r in large] == ["miss", "miss"]
    assert world.ran["stream"] == 3


async def test_head_is_cached_apart_from_get(served: Any) -> None:
    client, _, world = served
    heads = [await client.head("/sessions/s1") for _ in range(2)]
    assert [r.status_code for r in heads] == [200, 200]
    assert [desc(r) for r in heads] == ["miss", "hit"]
    assert heads[1].content == b""
    got = await client.get("/sessions/s1")
    assert desc(got) == "miss"
    assert got.json()["mood"] == "calm"
    assert world.ran["session"] == 2


async def test_every_response_has_server_timing(served: Any) -> None:
    client, _, _ = served
    responses = [
        await client.get("/uncached"),  # no rule
        await client.get("/nowhere"),  # no route at all: the framework's 404
        await client.post("/sessions/s1"),
        await client.get("/missing"),
        await client.get("/sessions/s1"),
        await client.get("/sessions/s1"),
    ]
    assert [desc(r) for r in responses] == ["bypass", "bypass", "bypass", "miss", "miss", "hit"]


async def test_local_only_cache_serves_the_middleware_too() -> None:
    world = World()
    async with tc.Cache() as cache:
        transport = httpx.ASGITransport(app=starlette_app(cache, world))
        async with httpx.AsyncClient(transport=transport, base_url="http://tta.test") as client:
            assert desc(await client.get("/sessions/s1")) == "miss"
            assert desc(await client.get("/sessions/s1")) == "hit"
    assert world.ran["session"] == 1


def test_a_tag_naming_no_path_parameter_fails_when_the_rule_is_made() -> None:
    with pytest.raises(TemplateError, match="user_id"):
        Rule("/sessions/{session_id}", tags=("user:{user_id}",))


def test_a_path_rule_matches_segments_and_the_rest_of_the_path() -> None:
    rule = Rule("/files/{owner}/{rest:path}", tags=("owner:{owner}",))
    assert rule.match("/files/u1/a/b.txt") == {"owner": "u1", "rest": "a/b.txt"}
    assert rule.match("/files/u1") is None
    assert rule.render_tags({"owner": "u:1", "rest": "x"}) == ("owner:u%3A1",)
