"""The middleware chain: the Operation record, composition, the drivers, LoggingMiddleware."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

import tta_cache as tc
from tta_cache.engine import Call
from tta_cache.observability import (
    BaseMiddleware,
    Chain,
    LoggingMiddleware,
    Operation,
    flow_state,
    redact,
)

NS = "tta"


def op_for(method: str, args: tuple[Any, ...], call: Call | None = None) -> Operation:
    return Operation.of(method, args, call, namespace=NS, is_async=False)


def a_call(key: str, kind: str = "session", function: str = "game.load") -> Call:
    # Operation.of reads only these three fields of a Call
    return cast(Call, SimpleNamespace(key=key, kind=kind, function=function))


class Recorder(BaseMiddleware):
    """Records every operation it sees (and ``flow_state()`` at the time)."""

    def __init__(self) -> None:
        self.ops: list[Operation] = []
        self.states: list[dict[str, Any] | None] = []  # kept alive, so compared by identity

    def _seen(self, op: Operation) -> None:
        self.ops.append(op)
        self.states.append(flow_state())

    def __call__(self, op: Operation, call_next: Callable[[], Any], /) -> Any:
        self._seen(op)
        return call_next()

    async def acall(self, op: Operation, call_next: Callable[[], Awaitable[Any]], /) -> Any:
        self._seen(op)
        return await call_next()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def local(recorder: Recorder) -> Iterator[tc.Cache]:
    with tc.Cache(middleware=[recorder], telemetry=False) as cache:
        yield cache


# --- the Operation record ---------------------------------------------------------------------


def test_operation_is_a_frozen_record_with_slots() -> None:
    op = op_for("write", ("tta:raw:k", b"", 1000))
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.name = "read"  # type: ignore[misc]
    assert not hasattr(op, "__dict__")


def test_the_key_template_of_a_session_key_keeps_no_argument_value() -> None:
    key = "tta:session:{sess-123}:game.load:'sess-123,'user-9"
    op = op_for("read", (key, ()), a_call(key))
    assert op == Operation(
        name="read",
        tier="redis",
        kind="session",
        function="game.load",
        key_template="tta:session:{…}:game.load:…",
        command="GET",
        batch_size=1,
        is_async=False,
    )


def test_the_key_template_of_a_plain_key_names_kind_and_function() -> None:
    key = "tta:character:game.load_character:'c1,'user-9"
    op = op_for("compute", (), a_call(key, "character", "game.load_character"))
    assert (op.tier, op.kind, op.key_template, op.command, op.batch_size) == (
        "compute",
        "character",
        "tta:character:game.load_character:…",
        "",
        0,
    )


@pytest.mark.parametrize(
    ("method", "args", "command", "batch_size", "kind", "template"),
    [
        ("read", ("tta:raw:k", ()), "GET", 1, "raw", "tta:raw:…"),
        ("read", ("tta:raw:k", ("tta:tag:*",)), "PIPELINE", 2, "raw", "tta:raw:…"),
        ("write", ("tta:raw:k", b"x", 10), "SET", 1, "raw", "tta:raw:…"),
        ("get_many", (["tta:raw:a", "tta:raw:b"],), "MGET", 1, "raw", "tta:raw:…"),
        ("set_many", ([("tta:raw:a", b"", 1)],), "SET", 1, "raw", "tta:raw:…"),
        ("set_many", ([("tta:raw:a", b"", 1)] * 3,), "PIPELINE SET", 3, "raw", "tta:raw:…"),
        ("versions", (("tta:tag:user:u1",),), "EVALSHA", 1, "tag", "tta:tag:…"),
        ("bump", (("tta:tag:user:u1",), "tta:invalidate", "{"), "EVALSHA", 1, "tag", "tta:tag:…"),
        ("delete", (["tta:raw:a"], "tta:invalidate", b"{}"), "PIPELINE", 2, "raw", "tta:raw:…"),
        ("delete", (["tta:raw:a"],), "DEL", 1, "raw", "tta:raw:…"),
        ("lease_read", ("tta:raw:k", (), None, False), "EVALSHA", 1, "raw", "tta:raw:…"),
        (
            "lease_read",
            ("tta:raw:k", ("tta:tag:*",), None, False),
            "PIPELINE",
            2,
            "raw",
            "tta:raw:…",
        ),
        ("fill", ("tta:raw:k", b"", 1, None, b""), "EVALSHA", 1, "raw", "tta:raw:…"),
    ],
)
def test_each_step_names_its_redis_command_and_key_shape(
    method: str, args: tuple[Any, ...], command: str, batch_size: int, kind: str, template: str
) -> None:
    op = op_for(method, args)
    assert (op.name, op.tier, op.command, op.batch_size) == (method, "redis", command, batch_size)
    assert (op.kind, op.function, op.key_template) == (kind, "", template)


@pytest.mark.parametrize("key", ["tta:{sess-123}:x:y", "other:session:f:'a", "sess-123", ""])
def test_a_key_of_unknown_shape_shows_nothing_but_the_namespace(key: str) -> None:
    op = op_for("read", (key, ()))
    assert (op.kind, op.key_template) == ("*", "tta:…")


# --- the chain --------------------------------------------------------------------------------


def test_the_first_middleware_is_outermost_and_results_flow_back_through_each() -> None:
    seen: list[str] = []

    def outer(op: Operation, call_next: Callable[[], Any]) -> Any:
        seen.append("outer in")
        result = call_next()
        seen.append("outer out")
        return [*result, "outer"]

    def inner(op: Operation, call_next: Callable[[], Any]) -> Any:
        seen.append("inner in")
        return [*call_next(), "inner"]

    chain = Chain([outer, inner])
    result = chain.call(op_for("write", ("tta:raw:k", b"", 1)), lambda: ["step"])
    assert result == ["step", "inner", "outer"]
    assert seen == ["outer in", "inner in", "outer out"]


def test_the_chain_is_composed_once_so_one_middleware_costs_no_extra_frame() -> None:
    def only(op: Operation, call_next: Callable[[], Any]) -> Any:
        return call_next()

    chain = Chain([only])
    assert chain.call is only
    assert Chain([]).call(op_for("write", ("k", b"", 1)), lambda: 42) == 42
    assert not Chain([])


async def test_async_steps_use_acall_and_plain_callables_pass_the_awaitable_on() -> None:
    seen: list[str] = []

    class Both(BaseMiddleware):
        def __call__(self, op: Operation, call_next: Callable[[], Any], /) -> Any:
            seen.append("sync")
            return call_next()

        async def acall(self, op: Operation, call_next: Callable[[], Awaitable[Any]], /) -> Any:
            seen.append("async")
            return await call_next() + 1

    def plain(op: Operation, call_next: Callable[[], Any]) -> Any:
        seen.append("plain")
        return call_next()

    async def step() -> int:
        return 41

    chain = Chain([Both(), plain])
    op = Operation.of("read", ("tta:raw:k", ()), None, namespace=NS, is_async=True)
    assert await chain.acall(op, step) == 42
    assert seen == ["async", "plain"]


# --- the drivers ------------------------------------------------------------------------------


def test_without_middleware_the_drivers_build_no_operation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[str] = []
    real = Operation.of

    def spy(*args: Any, **kwargs: Any) -> Operation:
        built.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(Operation, "of", spy)
    with tc.Cache(telemetry=False) as plain, tc.Cache(middleware=[Recorder()]) as chained:
        for cache in (plain, chained):

            @cache.cached
            def load(key: str) -> str:
                return key

            assert load("k") == "k"
        assert not plain.engine.chain
        assert built == ["compute"]  # the chained cache's computation only


def test_a_computation_runs_through_the_chain_and_l1_hits_do_not(
    local: tc.Cache, recorder: Recorder
) -> None:
    @local.cached(kind="character")
    def load_character(session_id: str, character_id: str) -> str:
        return f"{character_id} of {session_id}"

    assert load_character("sess-1", "c1") == "c1 of sess-1"
    assert load_character("sess-1", "c1") == "c1 of sess-1"  # an L1 hit
    function = load_character.cache_key("sess-1", "c1").split(":")[3]
    assert recorder.ops == [
        Operation(
            name="compute",
            tier="compute",
            kind="character",
            function=function,
            key_template=f"tta:character:{{…}}:{function}:…",
            command="",
            batch_size=0,
            is_async=False,
        )
    ]
    assert local.stats()["local"]["hits"] == 1


async def test_an_async_computation_reaches_acall_as_an_async_operation(
    local: tc.Cache, recorder: Recorder
) -> None:
    @local.cached
    async def load(key: str) -> str:
        await asyncio.sleep(0)
        return key.upper()

    assert await load("a") == "A"
    assert await load("a") == "A"
    assert [(op.name, op.is_async) for op in recorder.ops] == [("compute", True)]


async def test_a_plain_function_middleware_works_for_async_computations() -> None:
    seen: list[Operation] = []

    def plain(op: Operation, call_next: Callable[[], Any]) -> Any:
        seen.append(op)
        return call_next()

    with tc.Cache(middleware=[plain], telemetry=False) as cache:

        @cache.cached
        async def load(key: str) -> str:
            return key * 2

        assert await load("ab") == "abab"
    assert [op.name for op in seen] == ["compute"]


def test_a_nested_operation_gets_its_own_flow_state(local: tc.Cache, recorder: Recorder) -> None:
    inside: list[dict[str, Any] | None] = []

    @local.cached
    def inner(key: str) -> str:
        return key

    @local.cached
    def outer(key: str) -> str:
        inside.append(flow_state())
        return inner(key) + "!"

    assert outer("k") == "k!"
    assert flow_state() is None
    outer_state, inner_state = recorder.states  # outer's compute, then inner's
    assert outer_state is not None
    assert inner_state is not None
    assert inner_state is not outer_state
    assert inside[0] is outer_state


def test_a_middleware_error_on_a_computation_reaches_the_caller(local: tc.Cache) -> None:
    def refuse(op: Operation, call_next: Callable[[], Any]) -> Any:
        raise PermissionError("no computing today")

    local.engine.use([refuse])

    @local.cached
    def load(key: str) -> str:
        return key

    with pytest.raises(PermissionError):
        load("k")


# --- with Redis -------------------------------------------------------------------------------


def test_a_miss_runs_read_compute_and_fill_in_one_flow_state(
    redis_url: str, recorder: Recorder
) -> None:
    with tc.Cache(redis_url, local_maxsize=0, middleware=[recorder], telemetry=False) as cache:
        assert cache.wait_ready()

        @cache.cached_session
        def load_session(session_id: str) -> dict[str, str]:
            return {"id": session_id}

        load_session("sess-1")
        load_session("sess-1")  # no L1: an L2 hit
        cache.set("k", 1)
        cache.invalidate(session="sess-1")
        cache.delete("k")

    assert [(op.name, op.tier, op.command) for op in recorder.ops] == [
        ("read", "redis", "PIPELINE"),  # GET + the tag versions
        ("compute", "compute", ""),
        ("write", "redis", "SET"),
        ("read", "redis", "GET"),  # the versions are known now
        ("set_many", "redis", "SET"),
        ("bump", "redis", "EVALSHA"),
        ("delete", "redis", "PIPELINE"),
    ]
    states = recorder.states
    assert states[0] is states[1] is states[2]
    assert len({id(s) for s in states if s is not None}) == 5  # one per operation
    assert {op.kind for op in recorder.ops[:4]} == {"session"}
    assert all("sess-" not in op.key_template for op in recorder.ops)


def test_a_middleware_raising_a_backend_error_is_served_around(redis_url: str) -> None:
    def broken_reads(op: Operation, call_next: Callable[[], Any]) -> Any:
        if op.name == "read":
            raise tc.BackendError("injected")
        return call_next()

    with tc.Cache(redis_url, middleware=[broken_reads], telemetry=False) as cache:

        @cache.cached
        def load(key: str) -> str:
            return key + "!"

        assert load("k") == "k!"
        assert cache.stats()["errors_by_type"] == {"BackendError": 1}


# --- LoggingMiddleware --------------------------------------------------------------------------


def test_redact_removes_credentials_secrets_and_keys() -> None:
    text = (
        "redis://admin:s3cret@db:6380/0 failed; password=hunter2 "
        "key tta:session:{sess-1}:f:'sess-1 token: abc"
    )
    out = redact(text, "tta")
    for secret in ("s3cret", "hunter2", "sess-1", "abc"):
        assert secret not in out
    assert "redis://***@db:6380/0" in out
    assert "key <key>" in out


def test_logging_middleware_logs_one_line_per_failed_computation_without_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with tc.Cache(middleware=[LoggingMiddleware()], telemetry=False) as cache:

        @cache.cached(kind="character")
        def load(user_id: str) -> str:
            if user_id == "user-secret":
                raise LookupError(f"no character for {user_id}")
            return user_id

        with caplog.at_level(logging.WARNING, logger="tta_cache.middleware"):
            assert load("user-ok") == "user-ok"
            with pytest.raises(LookupError):
                load("user-secret")
    lines = [r.getMessage() for r in caplog.records if r.name == "tta_cache.middleware"]
    assert len(lines) == 1
    assert "tta-cache compute failed (kind=character key=tta:character:" in lines[0]
    assert lines[0].endswith("LookupError")
    assert "user-" not in lines[0]


def test_logging_middleware_logs_redis_failures_redacted(
    own_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with tc.Cache(own_redis.url, middleware=[LoggingMiddleware()], telemetry=False) as cache:
        assert cache.wait_ready()

        @cache.cached_session
        def load_session(session_id: str) -> str:
            return session_id

        own_redis.kill()
        with caplog.at_level(logging.WARNING, logger="tta_cache.middleware"):
            assert load_session("sess-secret") == "sess-secret"
    lines = [r.getMessage() for r in caplog.records if r.name == "tta_cache.middleware"]
    assert len(lines) == 1  # the read; with the versions unknown, no fill is attempted
    assert lines[0].startswith("tta-cache redis read ")
    assert "key=tta:session:{…}:" in lines[0]
    assert "ConnectionError: redis " in lines[0]
    assert "sess-secret" not in lines[0]
