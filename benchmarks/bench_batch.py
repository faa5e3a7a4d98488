"""The batch loader's rows of ``bench_core`` (``--only cached_many``):

1. ``cached_many`` of 100 ids, all cached in Redis (L1 off), against a raw MGET of the same 100
   payloads and a msgspec ``Decoder(CharacterState)`` decode of each (target: at most 1.0x);
2. ``cached_many`` of 100 new ids (none cached) against the same function undecorated plus one
   pipeline of 100 ``SET PX`` of its values, serialized (target: at most 1.1x).

The floors do a strict subset of the loader's work (no envelope, no stamp or freshness check, no
read before the fill), so beside them each row also reports the nearest peer, timed in the same
rounds: dogpile.cache's ``cache_multi_on_arguments`` on a redis region (pickle).

Both batches are tagged ``user:{user_id}``; the warm one ``character:{item}`` too (its versions are
known to the process, as they are once the channel is up). A cold id's ``character:{item}`` tag
would cost a versions script creating 100 tag keys on every call, which is Redis work, not the
loader's: the cold row leaves it out.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import msgspec
import redis

import tta_cache as tc
from tta_cache.tta import CharacterState

from ._harness import Row, Settings, measure, round_trips

__all__ = ["CASES", "many_cold", "many_warm"]

MANY = 100
FILL_PX = 7_200_000
CASES = (f"cached_many({MANY}) all cached (L1 off)", f"cached_many({MANY}) none cached")
# A character as a scene loads it: 330 bytes of JSON.
CHARACTER_STATE = CharacterState(
    "char-0042",
    name="Ada",
    session_id="sess-7f3a9c2e",
    personality_traits={"patience": 0.8, "warmth": 0.6},
    current_mood="wary",
    relationships={"user-1842": 0.4, "char-0007": -0.2},
    memory=["the storm", "the letter from Ada's sister"],
    dialogue_style="terse",
    therapeutic_role="grounding",
    last_updated=datetime.fromisoformat("2026-05-09T08:12:03+00:00"),
)


def load_characters(user_id: str, character_ids: list[str]) -> dict[str, CharacterState]:
    """The batch every row loads: the source of truth, as cheap as it gets."""
    return dict.fromkeys(character_ids, CHARACTER_STATE)


DOGPILE = "dogpile.cache cache_multi_on_arguments (redis, pickle)"


def dogpile_many(server: Any) -> Any:
    """dogpile.cache's batch loader on ``server``'s Redis, or None without dogpile.cache."""
    try:
        import dogpile.cache as dogpile

        from .bench_peers import dogpile_redis_region
    except ImportError:
        return None
    region = dogpile_redis_region(dogpile, server)

    @region.cache_multi_on_arguments()  # type: ignore[misc]
    def load_characters(*character_ids: str) -> list[CharacterState]:
        return [CHARACTER_STATE for _ in character_ids]

    return load_characters


def _peer(case: str, timings: dict[str, Any]) -> list[Row]:
    if DOGPILE not in timings:
        return []
    return [
        Row(
            case=case,
            ours_ns=timings["ours"].median,
            floor_ns=timings[DOGPILE].median,
            floor=DOGPILE,
        )
    ]


def _rows(case: str, timings: dict[str, Any], floor: str, target: float, trips: str) -> Row:
    ours = timings["ours"]
    return Row(
        case=case,
        ours_ns=ours.median,
        floor_ns=timings[floor].median,
        floor=floor,
        target=target,
        round_trips=trips,
        extra={"ours_best_ns": ours.best, "floor_best_ns": timings[floor].best},
    )


def many_warm(cache: tc.Cache, server: Any, admin: redis.Redis, settings: Settings) -> list[Row]:
    tags = ("user:{user_id}", "character:{item}")
    ours = cache.cached_many(kind="character", over="character_ids", tags=tags)(load_characters)
    ids = [f"char-{i}" for i in range(MANY)]
    ours("user-1", ids)  # the misses that fill Redis; the tags' versions are known from now on
    payload = tc.get_serializer("json").dumps(CHARACTER_STATE)
    floor_keys = [f"floor:cs:{i}" for i in range(MANY)]
    admin.mset(dict.fromkeys(floor_keys, payload))
    decoder = msgspec.json.Decoder(CharacterState)
    raw = server.client()
    if ours("user-1", ids) != dict.fromkeys(ids, CHARACTER_STATE):
        raise RuntimeError("cached_many did not rebuild the characters")

    def ours_run(n: int) -> None:
        for _ in range(n):
            ours("user-1", ids)

    def floor_run(n: int) -> None:
        mget, decode = raw.mget, decoder.decode
        for _ in range(n):
            values = mget(floor_keys)
            {c: decode(v) for c, v in zip(ids, values, strict=True) if v is not None}

    trips: list[str] = []
    floor = "MGET+Decoder(CharacterState) x100"
    runners = {"ours": ours_run, floor: floor_run}
    peer = dogpile_many(server)
    if peer is not None:
        peer(*ids)  # fills Redis

        def peer_run(n: int) -> None:
            for _ in range(n):
                peer(*ids)

        runners[DOGPILE] = peer_run
    try:
        hits = cache.stats()["redis"]["hits"]
        with round_trips(admin, 20, trips):
            ours_run(20)
        if cache.stats()["redis"]["hits"] - hits != 20 * MANY:
            raise RuntimeError("the warm batches were not served from Redis")
        timings = measure(runners, settings)
    finally:
        raw.close()
    return [_rows(CASES[0], timings, floor, 1.0, trips[0]), *_peer(CASES[0], timings)]


def many_cold(cache: tc.Cache, server: Any, admin: redis.Redis, settings: Settings) -> list[Row]:
    tags = ("user:{user_id}",)
    ours = cache.cached_many(kind="character", over="character_ids", tags=tags)(load_characters)
    dumps = tc.get_serializer("json").dumps
    raw = server.client()
    batches = itertools.count()

    def new_ids() -> list[str]:
        batch = next(batches)
        return [f"new-{batch}-{i}" for i in range(MANY)]

    ours("user-1", new_ids())  # learns the user's tag version

    def ours_run(n: int) -> None:
        for _ in range(n):
            ours("user-1", new_ids())

    def floor_run(n: int) -> None:
        for _ in range(n):
            values = load_characters("user-1", new_ids())
            pipe = raw.pipeline(transaction=False)
            for c, value in values.items():
                pipe.set(f"floor:new:{c}", dumps(value), px=FILL_PX)
            pipe.execute()

    trips: list[str] = []
    floor = "undecorated + pipeline of 100 SET"
    runners = {"ours": ours_run, floor: floor_run}
    peer = dogpile_many(server)
    if peer is not None:

        def peer_run(n: int) -> None:
            for _ in range(n):
                peer(*new_ids())

        runners[DOGPILE] = peer_run
    try:
        done = cache.stats()["computations"]
        with round_trips(admin, 20, trips):
            ours_run(20)
        if cache.stats()["computations"] - done != 20 * MANY:
            raise RuntimeError("the cold batches were not computed")
        timings = measure(runners, settings)
    finally:
        raw.close()
    return [_rows(CASES[1], timings, floor, 1.1, trips[0]), *_peer(CASES[1], timings)]
