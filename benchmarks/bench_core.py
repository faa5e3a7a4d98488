"""The core paths against their floors, measured in one run on a redis-server of our own.

1. L1 hit (sync) vs ``cachetools.cached(TTLCache(10_000, 600), lock=Lock())``, and vs an
   undecorated call
2. L1 hit (async) vs an ``async def`` doing the same cachetools lookup under a lock
3. L2 hit (L1 off) vs ``redis.Redis.get`` + ``json.loads`` of the same ~1 KB session state; async
   vs ``redis.asyncio`` GET + loads
4. miss + fill (a new key each time) vs raw GET + SET of the JSON
5. ``get_many`` of 100 keys (L1 off) vs raw MGET + ``json.loads`` of each
6. typed L2 hit (a ``SessionState``, L1 off) vs raw GET + a msgspec ``Decoder(SessionState)``
   built once, and the decode alone: ``Codec.decode`` of the envelope vs that decoder on its
   JSON (both report-only)
7. ``cached_many`` of 100 ids, all cached / none cached (``bench_batch.py``)
8. encrypted L2 hit (an ``EmotionalState``, L1 off, AES-256-GCM) vs the same hit of a cache
   without encryption keys, and the decode alone, encrypted vs not (report-only; the added
   microseconds are printed under the table: the goal is at most 10)

Every cache is built with its defaults (telemetry on, no SDK configured) but for the tier a case
turns off. Report-only rows put the same "ours" beside other floors (orjson, the client settings
tta uses) to show where a gap comes from. Speed is reported, not asserted: a MISS does not fail
the run; a crash does.

    .venv/bin/python -m benchmarks.bench_core [--quick] [--only TEXT] [--json PATH]

``--only TEXT`` times only the cases whose name contains TEXT (``--only SessionState``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import cachetools
import msgspec
import redis
import redis.asyncio as aredis
from cachetools.keys import hashkey

import tta_cache as tc
from tta_cache.tiers import RedisConfig, make_sync_client
from tta_cache.tta import EmotionalState, EmotionalStateType, SessionState, SessionStatus

from . import bench_batch
from ._harness import (
    AsyncRunner,
    Row,
    Settings,
    SyncRunner,
    Timing,
    ameasure,
    machine,
    measure,
    print_table,
    redis_server,
    round_trips,
    run_async,
    write_json,
)

orjson_loads: Callable[[bytes], Any] | None
try:
    from orjson import loads as orjson_loads
except ImportError:  # the "fast" extra is not installed
    orjson_loads = None

# A realistic session state: 966 bytes of compact JSON (just under compress_min_bytes=1024).
STATE: dict[str, Any] = {
    "session_id": "sess-7f3a9c2e-4b1d-4e8a-9f6c-2d5e8a1b3c4d",
    "user_id": "user-1842",
    "scene": "lighthouse_keeper_cottage",
    "chapter": 3,
    "turn": 47,
    "started_at": "2026-05-09T07:35:25+00:00",
    "updated_at": "2026-05-09T08:12:03+00:00",
    "player": {"name": "Robin", "pronouns": "they/them", "health": 82, "energy": 64},
    "inventory": ["brass lantern", "weathered map", "letter from Ada", "rope", "tea tin"],
    "flags": {"met_keeper": True, "lantern_lit": True, "storm_passed": False, "door_open": False},
    "emotional": {"valence": 0.35, "arousal": 0.42, "dominance": 0.51, "label": "hopeful"},
    "therapeutic": {"goal": "grounding", "technique": "5-4-3-2-1", "progress": 0.6, "step": 4},
    "recent": [
        {"role": "narrator", "text": "Rain drums on the slate roof as the keeper stirs the fire."},
        {"role": "player", "text": "I sit by the window and count five things I can see."},
        {"role": "narrator", "text": "The lamp, the map, the kettle, the gull, the line of foam."},
    ],
    "choices": ["ask about the letter", "light the second lamp", "rest a while"],
}
# What get_many fetches 100 of: a small character summary (162 bytes), so per-key costs show.
CHARACTER: dict[str, Any] = {
    "character_id": "char-0042",
    "name": "Ada",
    "role": "keeper",
    "trust": 0.7,
    "mood": "wary",
    "location": "cottage",
    "last_seen_turn": 45,
    "traits": ["patient", "guarded", "kind"],
}
# A typed session for the typed cases: 940 bytes of JSON (under compress_min_bytes), nested models.
SESSION_STATE = SessionState(
    session_id=STATE["session_id"],
    user_id=STATE["user_id"],
    status=SessionStatus.ACTIVE,
    current_scenario_id=STATE["scene"],
    narrative_position=STATE["turn"],
    choices=STATE["choices"],
    emotional_state=EmotionalState(
        STATE["user_id"],
        primary_emotion=EmotionalStateType.HOPEFUL,
        intensity=0.42,
        emotion_scores={EmotionalStateType.HOPEFUL: 0.6, EmotionalStateType.CALM: 0.3},
        session_id=STATE["session_id"],
        timestamp=datetime.fromisoformat(STATE["updated_at"]),
    ),
    context={k: STATE[k] for k in ("player", "inventory", "flags")},
    created_at=datetime.fromisoformat(STATE["started_at"]),
    last_updated=datetime.fromisoformat(STATE["updated_at"]),
)
TAGS = ("session:{session_id}", "user:{user_id}")
ARGS = ("sess-1", "char-1", "user-1")
MANY = 100
FILL_PX = 7_200_000  # the floor's SET lives as long as a "character" entry


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def load_state(session_id: str, character_id: str, user_id: str) -> dict[str, Any]:
    """The function every case caches: the source of truth, as cheap as it gets."""
    return STATE


async def aload_state(session_id: str, character_id: str, user_id: str) -> dict[str, Any]:
    return STATE


def calls(f: Callable[[str, str, str], Any]) -> SyncRunner:
    a, b, c = ARGS

    def run(n: int) -> None:
        for _ in range(n):
            f(a, b, c)

    return run


def acalls(f: Callable[[str, str, str], Any]) -> AsyncRunner:
    a, b, c = ARGS

    async def run(n: int) -> None:
        for _ in range(n):
            await f(a, b, c)

    return run


def rows_for(
    case: str, timings: dict[str, Timing], floors: dict[str, float | None], trips: list[str]
) -> list[Row]:
    """One row per floor (the targets are in ``floors``), all against the same "ours"."""
    ours = timings["ours"]
    return [
        Row(
            case=case,
            ours_ns=ours.median,
            floor_ns=timings[name].median,
            floor=name,
            target=target,
            round_trips=trips[0],
            extra={"ours_best_ns": ours.best, "floor_best_ns": timings[name].best},
        )
        for name, target in floors.items()
    ]


def _served(cache: tc.Cache, by: str) -> tuple[int, int]:
    stats = cache.stats()
    done = stats["computations"] if by == "computations" else stats[by]["hits"]
    return int(done), int(stats["errors"])


@contextmanager
def served(cache: tc.Cache, by: str, ops: int) -> Iterator[None]:
    """Check that the block's operations took the path the case is about (``local`` or
    ``redis`` hits, or ``computations``), so a regression that skips a tier cannot pass for a
    fast one. A few may fail open on a loaded machine (an ``op_timeout``); they are reported."""
    done, errors = _served(cache, by)
    yield
    after, errors_after = _served(cache, by)
    got, failed = after - done, errors_after - errors
    if got < ops * 0.98:
        raise RuntimeError(f"expected {ops} {by} in the block, got {got} ({failed} errors)")
    if got != ops:
        print(f"  note: {got}/{ops} {by} ({failed} Redis errors served fail-open)", flush=True)


def _loads_get(client: redis.Redis, key: str, loads: Callable[[bytes], Any]) -> SyncRunner:
    get = client.get

    def run(n: int) -> None:
        for _ in range(n):
            loads(get(key))  # type: ignore[arg-type]

    return run


# ---------------------------------------------------------------------- sync cases


def l1_hit(cache: tc.Cache, admin: redis.Redis, settings: Settings) -> list[Row]:
    ours = cache.cached(kind="character", tags=TAGS)(load_state)
    floor = cachetools.cached(cachetools.TTLCache(10_000, 600), lock=threading.Lock())(load_state)
    ours(*ARGS)  # the miss that fills L1
    floor(*ARGS)
    trips: list[str] = []
    with round_trips(admin, 10_000, trips), served(cache, "local", 10_000):
        calls(ours)(10_000)
    timings = measure(
        {"ours": calls(ours), "cachetools.cached": calls(floor), "undecorated": calls(load_state)},
        settings,
    )
    return rows_for(
        "L1 hit (sync)", timings, {"cachetools.cached": 1.2, "undecorated": None}, trips
    )


def l2_hit(cache: tc.Cache, server: Any, admin: redis.Redis, settings: Settings) -> list[Row]:
    ours = cache.cached(kind="session", tags=TAGS)(load_state)
    ours(*ARGS)  # the miss that fills L2
    admin.set("floor:state", dumps(STATE))
    raw = server.client()
    tta_client = make_sync_client(RedisConfig.from_url(server.url))
    runners = {
        "ours": calls(ours),
        "GET+json.loads": _loads_get(raw, "floor:state", json.loads),
        "same, tta's client settings": _loads_get(tta_client, "floor:state", json.loads),
    }
    floors: dict[str, float | None] = {"GET+json.loads": 1.15, "same, tta's client settings": None}
    if orjson_loads is not None:
        runners["GET+orjson.loads"] = _loads_get(raw, "floor:state", orjson_loads)
        floors["GET+orjson.loads"] = None
    trips: list[str] = []
    try:
        with round_trips(admin, 500, trips), served(cache, "redis", 500):
            calls(ours)(500)
        timings = measure(runners, settings)
    finally:
        raw.close()
        tta_client.close()
    return rows_for("L2 hit (sync, L1 off)", timings, floors, trips)


def miss_fill(cache: tc.Cache, server: Any, admin: redis.Redis, settings: Settings) -> list[Row]:
    ours = cache.cached(kind="character", tags=TAGS)(load_state)
    ours(*ARGS)  # the first call fetches the tags' versions; later misses only GET and SET
    raw = server.client()
    ids = itertools.count()
    sid, _, uid = ARGS

    def ours_run(n: int) -> None:
        for _ in range(n):
            ours(sid, f"new-{next(ids)}", uid)

    def floor_run(n: int) -> None:
        get, set_ = raw.get, raw.set
        for _ in range(n):
            key = f"floor:miss:{next(ids)}"
            if get(key) is None:
                set_(key, dumps(load_state(sid, key, uid)), px=FILL_PX)

    trips: list[str] = []
    try:
        with round_trips(admin, 500, trips), served(cache, "computations", 500):
            ours_run(500)
        timings = measure({"ours": ours_run, "GET+SET": floor_run}, settings)
    finally:
        raw.close()
    return rows_for("miss + fill (sync)", timings, {"GET+SET": 1.15}, trips)


def get_many(cache: tc.Cache, server: Any, admin: redis.Redis, settings: Settings) -> list[Row]:
    keys = [f"char:{i}" for i in range(MANY)]
    cache.set_many(dict.fromkeys(keys, CHARACTER))
    floor_keys = [f"floor:char:{i}" for i in range(MANY)]
    admin.mset(dict.fromkeys(floor_keys, dumps(CHARACTER)))
    raw = server.client()

    def ours_run(n: int) -> None:
        for _ in range(n):
            cache.get_many(keys)

    def floor(loads: Callable[[bytes], Any]) -> SyncRunner:
        mget = raw.mget

        def run(n: int) -> None:
            for _ in range(n):
                values = mget(floor_keys)
                {k: loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

        return run

    runners = {"ours": ours_run, "MGET+json.loads": floor(json.loads)}
    floors: dict[str, float | None] = {"MGET+json.loads": 1.1}
    if orjson_loads is not None:
        runners["MGET+orjson.loads"] = floor(orjson_loads)
        floors["MGET+orjson.loads"] = None
    trips: list[str] = []
    try:
        if len(cache.get_many(keys)) != MANY:
            raise RuntimeError("get_many did not find the keys set_many wrote")
        with round_trips(admin, 20, trips), served(cache, "redis", 20 * MANY):
            ours_run(20)
        timings = measure(runners, settings)
    finally:
        raw.close()
    return rows_for(f"get_many({MANY}) (sync, L1 off)", timings, floors, trips)


def load_session_state(session_id: str, character_id: str, user_id: str) -> SessionState:
    return SESSION_STATE


def typed_l2_hit(cache: tc.Cache, server: Any, admin: redis.Redis, settings: Settings) -> list[Row]:
    ours = cache.cached(kind="session", tags=TAGS)(load_session_state)
    ours(*ARGS)  # the miss that fills L2
    admin.set("floor:session_state", tc.get_serializer("json").dumps(SESSION_STATE))
    raw = server.client()
    decoder = msgspec.json.Decoder(SessionState)
    if ours(*ARGS) != SESSION_STATE:
        raise RuntimeError("the typed L2 hit did not rebuild the SessionState")
    trips: list[str] = []
    try:
        with round_trips(admin, 500, trips), served(cache, "redis", 500):
            calls(ours)(500)
        timings = measure(
            {
                "ours": calls(ours),
                "GET+msgspec Decoder(SessionState)": _loads_get(
                    raw, "floor:session_state", decoder.decode
                ),
            },
            settings,
        )
    finally:
        raw.close()
    return rows_for(
        "typed L2 hit (a SessionState), L1 off",
        timings,
        {"GET+msgspec Decoder(SessionState)": None},
        trips,
    )


# An emotional state as the facade caches it: 321 bytes of JSON.
EMOTIONAL_STATE = EmotionalState(
    STATE["user_id"],
    primary_emotion=EmotionalStateType.ANXIOUS,
    intensity=0.72,
    emotion_scores={EmotionalStateType.ANXIOUS: 0.72, EmotionalStateType.HOPEFUL: 0.2},
    secondary_emotions=[EmotionalStateType.OVERWHELMED],
    triggers=["exam tomorrow", "argument with a friend"],
    session_id=STATE["session_id"],
    confidence=0.9,
    timestamp=datetime.fromisoformat(STATE["updated_at"]),
)
ENCRYPTION_KEYS = {"k1": bytes(range(32))}


def load_emotional_state(user_id: str) -> EmotionalState:
    return EMOTIONAL_STATE


def encrypted_l2_hit(server: Any, admin: redis.Redis, settings: Settings) -> list[Row]:
    # One cache, so both sides share the connection lane: the kinds differ only in that
    # "emotional" is encrypted (the default once keys are set) and "character" is not.
    cache = tc.Cache(
        server.url, namespace="bench_enc", local_maxsize=0, encryption_keys=ENCRYPTION_KEYS
    )
    try:
        if not cache.wait_ready(10):
            raise RuntimeError("the invalidation channel did not come up")
        tags = ("user:{user_id}",)
        ours = cache.cached(kind="emotional", tags=tags)(load_emotional_state)
        floor = cache.cached(kind="character", tags=tags)(load_emotional_state)
        ours("u1")  # the misses that fill L2
        floor("u1")
        if tc.Codec.key_id_of(admin.get(ours.cache_key("u1")) or b"") != "k1":
            raise RuntimeError("the emotional state was not encrypted")
        if tc.Codec.key_id_of(admin.get(floor.cache_key("u1")) or b"") is not None:
            raise RuntimeError("the unencrypted kind was encrypted")
        if ours("u1") != EMOTIONAL_STATE or floor("u1") != EMOTIONAL_STATE:
            raise RuntimeError("the L2 hit did not rebuild the EmotionalState")
        trips: list[str] = []
        with round_trips(admin, 500, trips), served(cache, "redis", 500):
            for _ in range(500):
                ours("u1")
        with served(cache, "redis", 500):
            for _ in range(500):
                floor("u1")

        def hits(f: Callable[[str], Any]) -> SyncRunner:
            def run(n: int) -> None:
                for _ in range(n):
                    f("u1")

            return run

        timings = measure({"ours": hits(ours), "same, unencrypted kind": hits(floor)}, settings)
    finally:
        cache.close()
    rows = rows_for(
        "encrypted L2 hit (an EmotionalState), L1 off",
        timings,
        {"same, unencrypted kind": None},
        trips,
    )
    _added(rows[0])
    return rows


def _added(row: Row) -> None:
    row.extra["added_us"] = (row.ours_ns - row.floor_ns) / 1000
    row.extra["added_best_us"] = (row.extra["ours_best_ns"] - row.extra["floor_best_ns"]) / 1000


def encrypted_decode(settings: Settings) -> list[Row]:
    sealed = tc.Codec(encryption_keys=ENCRYPTION_KEYS, namespace="tta")
    plain = tc.Codec(namespace="tta")
    key = "tta:emotional:bench.load:'u1"
    meta: dict[str, Any] = {"stamp": [("user:u1", 1)], "created": 1.0, "fresh_until": 2.0}
    sealed_env = sealed.encode(EMOTIONAL_STATE, key=key, kind="emotional", **meta)
    plain_env = plain.encode(EMOTIONAL_STATE, key=key, kind="emotional", **meta)
    if sealed.decode(sealed_env, EmotionalState, key=key, kind="emotional").value != (
        plain.decode(plain_env, EmotionalState, key=key, kind="emotional").value
    ):
        raise RuntimeError("the encrypted and plain envelopes disagree")

    def decoding(codec: tc.Codec, envelope: bytes) -> SyncRunner:
        def run(n: int) -> None:
            decode = codec.decode
            for _ in range(n):
                decode(envelope, EmotionalState, key=key, kind="emotional")

        return run

    timings = measure(
        {"ours": decoding(sealed, sealed_env), "unencrypted decode": decoding(plain, plain_env)},
        settings,
    )
    rows = rows_for(
        "decode EmotionalState envelope, encrypted", timings, {"unencrypted decode": None}, ["0 RT"]
    )
    _added(rows[0])
    return rows


def typed_decode(settings: Settings) -> list[Row]:
    codec = tc.Codec()
    envelope = codec.encode(
        SESSION_STATE, stamp=[("session:s", 1), ("user:u", 2)], created=1.0, fresh_until=2.0
    )
    payload = tc.get_serializer("json").dumps(SESSION_STATE)
    decoder = msgspec.json.Decoder(SessionState)
    if codec.decode(envelope, SessionState).value != decoder.decode(payload):
        raise RuntimeError("the codec and msgspec disagree about the SessionState")

    def ours(n: int) -> None:
        decode = codec.decode
        for _ in range(n):
            decode(envelope, SessionState)

    def floor(n: int) -> None:
        decode = decoder.decode
        for _ in range(n):
            decode(payload)

    timings = measure({"ours": ours, "msgspec.json.decode(type=SessionState)": floor}, settings)
    trips = ["0 RT"]
    return rows_for(
        "decode SessionState envelope",
        timings,
        {"msgspec.json.decode(type=SessionState)": None},
        trips,
    )


# ---------------------------------------------------------------------- async cases


async def l1_hit_async(cache: tc.Cache, admin: redis.Redis, settings: Settings) -> list[Row]:
    ours = cache.cached(kind="character", tags=TAGS)(aload_state)
    table: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(10_000, 600)
    lock = threading.Lock()

    async def floor(session_id: str, character_id: str, user_id: str) -> Any:
        key = hashkey(session_id, character_id, user_id)
        with lock:
            try:
                return table[key]
            except KeyError:
                pass
        value = await aload_state(session_id, character_id, user_id)
        with lock:
            return table.setdefault(key, value)

    await ours(*ARGS)
    await floor(*ARGS)
    trips: list[str] = []
    with round_trips(admin, 10_000, trips), served(cache, "local", 10_000):
        await acalls(ours)(10_000)
    timings = await ameasure(
        {
            "ours": acalls(ours),
            "async def + cachetools": acalls(floor),
            "undecorated": acalls(aload_state),
        },
        settings,
    )
    return rows_for(
        "L1 hit (async)", timings, {"async def + cachetools": 1.2, "undecorated": None}, trips
    )


async def l2_hit_async(
    cache: tc.Cache, server: Any, admin: redis.Redis, settings: Settings
) -> list[Row]:
    ours = cache.cached(kind="session", tags=TAGS)(aload_state)
    await ours(*ARGS)
    admin.set("floor:state", dumps(STATE))
    raw = aredis.Redis(host=server.host, port=server.port)

    async def floor(n: int) -> None:
        get, loads = raw.get, json.loads
        for _ in range(n):
            loads(await get("floor:state"))  # type: ignore[arg-type]

    trips: list[str] = []
    try:
        with round_trips(admin, 500, trips), served(cache, "redis", 500):
            await acalls(ours)(500)
        timings = await ameasure({"ours": acalls(ours), "GET+json.loads": floor}, settings)
    finally:
        await raw.aclose()
    return rows_for("L2 hit (async, L1 off)", timings, {"GET+json.loads": None}, trips)


async def async_cases(
    l1: tc.Cache, l2: tc.Cache, server: Any, admin: redis.Redis, settings: Settings
) -> tuple[list[Row], list[Row]]:
    try:
        return (
            await l1_hit_async(l1, admin, settings),
            await l2_hit_async(l2, server, admin, settings),
        )
    finally:
        await l1.aclose()
        await l2.aclose()


# ---------------------------------------------------------------------- entry points


def progress(case: str) -> None:
    print(f"  timing {case} ...", flush=True)


def run(quick: bool = False, only: str | None = None) -> list[Row]:
    """Every core case (or those whose name contains ``only``), on a redis-server started for
    the purpose; the rows of the table."""
    settings = Settings.for_mode(quick)

    def wanted(*cases: str) -> bool:
        return only is None or any(only in case for case in cases)

    rows: dict[str, list[Row]] = {}
    with redis_server() as server:
        admin = server.client()
        l1 = tc.Cache(server.url, namespace="bench")  # the defaults: L1 on
        l2 = tc.Cache(server.url, namespace="bench_l2", local_maxsize=0)
        try:
            for cache in (l1, l2):
                if not cache.wait_ready(10):
                    raise RuntimeError("the invalidation channel did not come up")
            if wanted("L1 hit (sync)"):
                progress("L1 hit (sync)")
                rows["l1_sync"] = l1_hit(l1, admin, settings)
            if wanted("L2 hit (sync, L1 off)"):
                progress("L2 hit (sync)")
                rows["l2_sync"] = l2_hit(l2, server, admin, settings)
            if wanted("miss + fill (sync)"):
                progress("miss + fill")
                rows["fill"] = miss_fill(l1, server, admin, settings)
            if wanted(f"get_many({MANY}) (sync, L1 off)"):
                progress("get_many")
                rows["many"] = get_many(l2, server, admin, settings)
            if wanted(bench_batch.CASES[0]):
                progress(bench_batch.CASES[0])
                rows["many_warm"] = bench_batch.many_warm(l2, server, admin, settings)
            if wanted(bench_batch.CASES[1]):
                progress(bench_batch.CASES[1])
                rows["many_cold"] = bench_batch.many_cold(l2, server, admin, settings)
            if wanted("typed L2 hit (a SessionState), L1 off"):
                progress("typed L2 hit")
                rows["typed_l2"] = typed_l2_hit(l2, server, admin, settings)
            if wanted("decode SessionState envelope"):
                progress("decode SessionState envelope")
                rows["typed_decode"] = typed_decode(settings)
            if wanted("encrypted L2 hit (an EmotionalState), L1 off"):
                progress("encrypted L2 hit")
                rows["encrypted_l2"] = encrypted_l2_hit(server, admin, settings)
            if wanted("decode EmotionalState envelope, encrypted"):
                progress("decode EmotionalState envelope, encrypted")
                rows["encrypted_decode"] = encrypted_decode(settings)
            # last: closing a cache's asyncio client closes the cache too
            if wanted("L1 hit (async)", "L2 hit (async, L1 off)"):
                progress("L1 hit and L2 hit (async)")
                rows["l1_async"], rows["l2_async"] = run_async(
                    async_cases(l1, l2, server, admin, settings)
                )
        finally:
            l1.close()
            l2.close()
            admin.close()
    order = (
        "l1_sync",
        "l1_async",
        "l2_sync",
        "l2_async",
        "typed_l2",
        "typed_decode",
        "encrypted_l2",
        "encrypted_decode",
    )
    names = (*order, "fill", "many", "many_warm", "many_cold")
    return [row for name in names for row in rows.get(name, [])]


def main(quick: bool = False, json_path: str | None = None, only: str | None = None) -> list[Row]:
    """Run the core cases, print their table, optionally write JSON; returns the rows."""
    rows = run(quick, only)
    print_table(rows, "core paths: median ns/op over interleaved rounds")
    for row in rows:
        if "added_us" in row.extra:
            print(
                f"{row.case}: {row.extra['added_us']:+.1f} us per operation (median; "
                f"best of rounds {row.extra['added_best_us']:+.1f} us), {row.ratio:.2f}x; "
                "goal: at most +10 us"
            )
    if json_path:
        write_json(json_path, {"machine": machine(), "rows": [r.as_dict() for r in rows]})
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="tta-cache core benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer iterations (CI smoke)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--only", metavar="TEXT", help="only the cases whose name contains TEXT")
    options = parser.parse_args()
    main(options.quick, options.json, options.only)
