"""``examples/tta_service``: the FastAPI game service over a real SQLite file and a real Redis,
through httpx's ASGI transport (two app instances standing for two workers), and once under
uvicorn with two worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.tta_service.app import create_app  # noqa: E402

PLAYERS = 5


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tta.test")


async def close_app(app: Any) -> None:
    await app.state.service.cache.aclose()
    app.state.service.db.dispose()


@pytest.fixture
async def two_workers(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Any]]:
    url = f"sqlite:///{tmp_path / 'service.sqlite3'}"
    first = create_app(url, redis_url, seed_players=PLAYERS)
    second = create_app(url, redis_url)
    async with client_of(first) as a, client_of(second) as b:
        yield a, b, first
    await close_app(first)
    await close_app(second)


def version_of(response: httpx.Response) -> str:
    body = response.json()
    return str(body.get("last_updated") or body.get("timestamp"))


async def test_reads_are_cached_as_responses_and_as_entries(two_workers: Any) -> None:
    a, _, app = two_workers
    first = await a.get("/sessions/session-1")
    second = await a.get("/sessions/session-1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert 'desc="miss"' in first.headers["server-timing"]
    assert 'desc="hit"' in second.headers["server-timing"]
    not_modified = await a.get(
        "/sessions/session-1", headers={"If-None-Match": first.headers["etag"]}
    )
    assert not_modified.status_code == 304
    assert app.state.service.game.loads == 1
    assert (await a.get("/sessions/nobody")).status_code == 404


async def test_a_choice_reaches_the_responses_and_entries_of_both_workers(two_workers: Any) -> None:
    a, b, _ = two_workers
    paths = [
        "/sessions/session-2",
        "/sessions/session-2/narrative",
        "/sessions/session-2/characters/guide",
        "/users/player-2/emotional",
        "/users/player-2/progress",
    ]
    before = {p: version_of(await b.get(p)) for p in paths}
    chose = await a.post("/sessions/session-2/choices", json={"character_id": "guide", "option": 0})
    assert chose.status_code == 200
    written = chose.json()
    assert set(written) == {
        "session:session-2",
        "narrative:session-2",
        "character:session-2:guide",
        "emotional:player-2",
        "progress:player-2",
    }
    # The worker that wrote reads the new versions at once (I1) ...
    mine = {p: version_of(await a.get(p)) for p in paths}
    assert all(mine[p] != before[p] for p in paths), (before, mine)
    # ... and the other within the channel's delay (I2: 50 ms; waited for up to 5 s here).
    deadline = time.monotonic() + 5.0
    while True:
        theirs = {p: version_of(await b.get(p)) for p in paths}
        if theirs == mine or time.monotonic() > deadline:
            break
    assert theirs == mine


async def test_the_service_without_the_cache_answers_the_same(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'service.sqlite3'}"
    app = create_app(url, None, cache_on=False, seed_players=PLAYERS)
    async with client_of(app) as client:
        for _ in range(2):
            response = await client.get("/sessions/session-3/characters/shadow")
            assert response.status_code == 200
            assert "server-timing" not in response.headers
        assert app.state.service.game.loads == 4  # session + character, twice
        stats = (await client.get("/stats")).json()
        assert stats["cache"] == "off"
        assert stats["queries"] >= 4
    await close_app(app)


def test_under_uvicorn_with_two_workers_a_choice_is_read_back_from_every_worker(
    tmp_path: Path, redis_url: str
) -> None:
    db = tmp_path / "service.sqlite3"
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{db}",
        "REDIS_URL": redis_url,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
    }
    subprocess.run(
        [sys.executable, "-m", "examples.tta_service.app", "seed", str(PLAYERS)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    log = (tmp_path / "uvicorn.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.tta_service.app:app",
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + 60
            pids: set[int] = set()
            while len(pids) < 2:  # both workers up (a new connection each: spread by the kernel)
                assert time.monotonic() < deadline, (tmp_path / "uvicorn.log").read_text()
                try:
                    with httpx.Client(base_url=base, timeout=5) as probe:
                        pids.add(probe.get("/stats").json()["pid"])
                except httpx.TransportError:
                    time.sleep(0.1)
            old = version_of(client.get("/sessions/session-4"))
            written = client.post(
                "/sessions/session-4/choices", json={"character_id": "companion", "option": 1}
            ).json()
            new = written["session:session-4"]
            assert new > 0
            seen: dict[int, str] = {}
            deadline = time.monotonic() + 10
            while len(seen) < 2:
                assert time.monotonic() < deadline, seen
                with httpx.Client(base_url=base, timeout=5) as fresh:
                    version = version_of(fresh.get("/sessions/session-4"))
                    pid = fresh.get("/stats").json()["pid"]
                if version != old:
                    seen[pid] = version
            assert len(set(seen.values())) == 1
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
