"""Secrets are never printed: the Redis password, signing keys and encryption keys stay out of
reprs, errors, log lines, spans, health and stats reports and CLI output. Each test drives real
traffic (a redis-server with ``requirepass``), captures everything that could be shown, and
searches it for every form of every secret."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tta_cache as tc
from helpers.redis_server import RedisServer
from tta_cache.cli import main
from tta_cache.tiers import RedisConfig

PASSWORD = "pw-Zq8r!redis"
SIGNING = "sig-Hk2v9-signing-key-0123456789"
ENC_NEW = bytes(range(32, 64))
ENC_OLD = bytes(range(64, 96))


def forms(secret: str | bytes) -> list[str]:
    """Every way a secret could appear in text."""
    raw = secret.encode() if isinstance(secret, str) else secret
    out = [raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()]
    out.append(repr(raw)[2:-1])
    if isinstance(secret, str):
        out.append(secret)
    return [f for f in out if len(f) >= 8]


SECRETS = [*forms(PASSWORD), *forms(SIGNING), *forms(ENC_NEW), *forms(ENC_OLD)]


def assert_no_secret(text: str) -> None:
    for form in SECRETS:
        assert form not in text, f"a secret ({form[:4]}...) was printed"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer("--requirepass", PASSWORD, client_options={"password": PASSWORD}) as s:
        yield s


@pytest.fixture
def url(server: RedisServer) -> str:
    with server.client() as c:
        c.flushall()
    return f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "TTA_CACHE_ENCRYPTION_KEYS",
        f"k2:{base64.b64encode(ENC_NEW).decode()},k1:{base64.b64encode(ENC_OLD).decode()}",
    )
    monkeypatch.setenv("TTA_CACHE_SIGNING_KEYS", SIGNING)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # every logger, the library's and redis-py's
    return caplog


def logged(caplog: pytest.LogCaptureFixture) -> str:
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    return "\n".join(handler.format(r) for r in caplog.records)


def keyed_cache(url: str, **options: Any) -> tc.Cache:
    return tc.Cache(
        url,
        signing_key=[SIGNING],
        encryption_keys={"k2": ENC_NEW, "k1": base64.b64encode(ENC_OLD).decode()},
        **options,
    )


def test_reprs_strs_and_reports_of_a_keyed_cache_hold_no_secret(
    url: str, logs: pytest.LogCaptureFixture
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with keyed_cache(url, tracer_provider=provider, redis_options={"password": PASSWORD}) as cache:

        @cache.cached(kind="emotional", tags=("user:{user_id}",))
        def mood(user_id: str) -> dict[str, str]:
            return {"user": user_id}

        mood("u1")
        mood("u1")
        cache.invalidate(user="u1")
        cache.set("k", 1, kind="therapeutic")
        cache.get_many(["k", "missing"], kind="therapeutic")
        cache.wait_ready(5.0)
        shown = [
            repr(cache),
            str(cache),
            repr(cache.engine.redis_cfg),
            str(cache.engine.redis_cfg),
            repr(cache.engine.codec),
            repr(cache.engine.codec.encryptor),
            json.dumps(cache.health(), default=str),
            json.dumps(cache.stats(), default=str),
        ]
    for span in exporter.get_finished_spans():
        shown.append(span.to_json())
    provider.shutdown()
    assert "***" in repr(RedisConfig.from_url(url))
    assert_no_secret("\n".join(shown))
    assert_no_secret(logged(logs))


def test_fail_open_and_decode_errors_log_no_secret(
    server: RedisServer, url: str, logs: pytest.LogCaptureFixture
) -> None:
    with keyed_cache(url, op_timeout=0.5) as cache:

        @cache.cached(kind="therapeutic", tags=("user:{user_id}",))
        def progress(user_id: str) -> str:
            return user_id

        progress("u1")
        with server.client() as c:
            c.set(progress.cache_key("u1"), b"\xf7\xcc\x02garbage")
        progress("u1")  # a decode error, logged
        assert cache.stats()["decode_errors"] == 1
    with keyed_cache(f"redis://:wrong-{PASSWORD}@127.0.0.1:{server.port}/0") as wrong:
        assert wrong.get("k") is None  # AUTH fails: fail-open, logged
        assert wrong.stats()["errors"] >= 1
        with pytest.raises(tc.BackendError) as caught:
            wrong.set("k", 1, on_error="raise")
        assert_no_secret(str(caught.value) + repr(caught.value) + str(caught.value.__cause__))
    assert_no_secret(logged(logs))


@pytest.mark.parametrize(
    "options",
    [
        {"encryption_keys": {"k1": ENC_NEW[:31]}},
        {"encryption_keys": {"k1": ENC_NEW + b"x"}},
        {"encryption_keys": f"k1:{base64.b64encode(ENC_NEW).decode()}!"},
        {"encryption_keys": {"bad id": ENC_NEW}},
        {"signing_key": [SIGNING, ""]},
        {"serializer": "pickle"},
    ],
)
def test_configuration_errors_quote_no_key(options: dict[str, Any]) -> None:
    with pytest.raises(tc.ConfigurationError) as caught:
        tc.Cache(f"redis://:{PASSWORD}@127.0.0.1:1/0", **options)
    assert_no_secret(str(caught.value) + repr(caught.value))


def test_a_bad_url_error_masks_the_password() -> None:
    with pytest.raises(tc.ConfigurationError) as caught:
        tc.Cache(f"ftp://user:{PASSWORD}@127.0.0.1/0")
    assert_no_secret(str(caught.value))


@pytest.mark.parametrize(
    "argv",
    [
        ["health"],
        ["health", "--json"],
        ["stats"],
        ["stats", "--json"],
        ["cleanup", "orphans", "--dry-run"],
        ["forget-user", "u1", "--dry-run", "--json"],
        ["rotate-keys", "--dry-run"],
        ["rotate-keys", "--confirm", "--json"],
        ["invalidate", "--user", "u1"],
    ],
)
def test_cli_output_holds_no_secret(
    url: str,
    env: None,
    argv: list[str],
    capsys: pytest.CaptureFixture[str],
    logs: pytest.LogCaptureFixture,
) -> None:
    with keyed_cache(url) as cache:
        cache.set("k", {"v": 1}, kind="emotional", tags=["user:u1"])
    out = io.StringIO()
    code = main(["--redis-url", url, "-vv", *argv], out=out)
    captured = capsys.readouterr()
    assert code in (0, 1), captured.err
    assert_no_secret(out.getvalue() + captured.out + captured.err)
    assert_no_secret(logged(logs))


def test_cli_unreachable_and_wrong_password_errors_hold_no_secret(
    server: RedisServer, env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in (
        f"redis://:wrong-{PASSWORD}@127.0.0.1:{server.port}/0",
        f"redis://u:{PASSWORD}@127.0.0.1:1/0",
        f"redis+cluster://:{PASSWORD}@127.0.0.1:1",
    ):
        out = io.StringIO()
        main(["--redis-url", url, "--timeout", "0.5", "stats"], out=out)
        captured = capsys.readouterr()
        assert_no_secret(out.getvalue() + captured.out + captured.err)


def test_the_secret_forms_are_searched_for_real() -> None:
    # The searches above would pass vacuously if the forms were wrong.
    config = RedisConfig.from_url(f"redis://:{PASSWORD}@h/0")
    assert config.password == PASSWORD
    with pytest.raises(AssertionError):
        assert_no_secret(f"x{base64.b64encode(ENC_NEW).decode()}x")
    with pytest.raises(AssertionError):
        assert_no_secret(redis.Redis(password=PASSWORD).get_connection_kwargs()["password"])
