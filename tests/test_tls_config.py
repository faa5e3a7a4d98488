"""TLS settings parsed from the URL query or keywords (no server needed; the connections are in
``tests/integration/test_tls.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import tta_cache as tc
from tta_cache.tiers import RedisConfig
from tta_cache.tta import cache_options_from_config


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, str]:
    files = {}
    for name in ("ca", "cert", "key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("not checked here\n")
        files[name] = str(path)
    return files


def test_tls_options_come_from_the_url_query(pem: dict[str, str]) -> None:
    cfg = RedisConfig.from_url(
        f"rediss://h:6380/2?ssl_ca_certs={pem['ca']}&ssl_certfile={pem['cert']}"
        f"&ssl_keyfile={pem['key']}&ssl_cert_reqs=optional&pool_timeout=3"
    )
    assert (cfg.ssl, cfg.db, cfg.pool_timeout) == (True, 2, 3.0)
    assert cfg.tls_kwargs() == {
        "ssl_ca_certs": pem["ca"],
        "ssl_certfile": pem["cert"],
        "ssl_keyfile": pem["key"],
        "ssl_cert_reqs": "optional",
        "ssl_check_hostname": True,
    }


def test_keywords_win_over_the_query_and_may_come_inside_extra(pem: dict[str, str]) -> None:
    url = f"rediss://h/0?ssl_ca_certs={pem['cert']}"
    assert RedisConfig.from_url(url, ssl_ca_certs=pem["ca"]).tls.ca_certs == pem["ca"]
    cfg = RedisConfig.from_url(url, extra={"ssl_ca_certs": pem["ca"], "client_name": "x"})
    assert cfg.tls.ca_certs == pem["ca"]
    assert cfg.extra == {"client_name": "x"}  # the ssl_* option is not passed twice


@pytest.mark.parametrize(
    ("url", "mode"),
    [
        ("rediss://h:1/0", "standalone"),
        ("rediss+cluster://h:1,h:2", "cluster"),
        ("rediss+sentinel://h:1/svc/0", "sentinel"),
        ("redis+cluster://h:1?ssl=true", "cluster"),
        ("redis+sentinel://h:1/svc?ssl=yes", "sentinel"),
    ],
)
def test_every_topology_has_a_tls_form(url: str, mode: str) -> None:
    cfg = RedisConfig.from_url(url)
    assert (cfg.ssl, cfg.mode) == (True, mode)
    assert cfg._common()["ssl_cert_reqs"] == "required"  # verified by default


def test_without_tls_no_ssl_option_reaches_redis_py() -> None:
    cfg = RedisConfig.from_url("redis://h/0")
    assert not cfg.ssl
    assert not any(k.startswith("ssl") for k in cfg._common())


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis://h/0?ssl_ca_certs=/x", {}, "given without TLS"),
        ("redis://h/0", {"ssl_cert_reqs": "none"}, "given without TLS"),
        ("rediss://h/0?ssl_cert_reqs=sometimes", {}, "ssl_cert_reqs must be one of"),
        ("rediss://h/0?ssl_ca_certs=/no/such/ca.pem", {}, "no such file '/no/such/ca.pem'"),
        ("rediss://h/0?ssl_check_hostname=maybe", {}, "must be true or false"),
        ("redis+cluster://h:1?ssl=perhaps", {}, "must be true or false"),
        ("unix:///tmp/r.sock?ssl=true", {}, "unix:// socket"),
    ],
)
def test_bad_tls_settings_are_configuration_errors(
    url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(tc.ConfigurationError, match=message):
        RedisConfig.from_url(url, **options)


def test_a_key_file_needs_its_certificate(pem: dict[str, str]) -> None:
    with pytest.raises(tc.ConfigurationError, match="ssl_keyfile needs ssl_certfile"):
        RedisConfig.from_url("rediss://h/0", ssl_keyfile=pem["key"])


def test_cert_reqs_none_turns_the_hostname_check_off() -> None:
    kwargs = RedisConfig.from_url("rediss://h/0?ssl_cert_reqs=none").tls_kwargs()
    assert kwargs == {"ssl_cert_reqs": "none", "ssl_check_hostname": False}


def test_the_cache_takes_them_through_redis_options(pem: dict[str, str]) -> None:
    with tc.Cache("rediss://127.0.0.1:1/0", redis_options={"ssl_ca_certs": pem["ca"]}) as cache:
        assert cache.engine.redis_cfg is not None
        assert cache.engine.redis_cfg.tls.ca_certs == pem["ca"]


def test_the_seed_config_dict_takes_them(pem: dict[str, str]) -> None:
    options = cache_options_from_config(
        {"host": "h", "port": 6380, "ssl": True, "ssl_ca_certs": pem["ca"]}
    )
    assert options["redis_url"].startswith("rediss://h:6380/")
    assert options["redis_options"] == {"ssl_ca_certs": pem["ca"]}
