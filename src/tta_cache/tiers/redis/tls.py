"""TLS settings of the Redis connections: which CA to trust, the client's own certificate, and how
strictly the server's certificate is checked.

They come from the URL query (``rediss://host:6380/0?ssl_ca_certs=/etc/ca.pem``) or keywords
(``RedisConfig.from_url(url, ssl_ca_certs=...)``, ``Cache(url, redis_options={"ssl_ca_certs":
...})``), and every connection the library makes uses them: the standalone pool, Sentinel (the
Sentinels themselves and the master they name), the Cluster nodes, the invalidation channel and
the failover watch. TLS is on for ``rediss://``, ``rediss+sentinel://``, ``rediss+cluster://``,
or ``?ssl=true`` on the other two.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from ...exceptions import ConfigurationError

__all__ = ["TLS_OPTIONS", "TlsOptions", "tls_from"]

TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
"""The options read from the URL query or keywords (redis-py's names)."""

_CERT_REQS = ("none", "optional", "required")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclasses.dataclass(frozen=True)
class TlsOptions:
    """File paths and checks for TLS connections (paths, never secrets: a key file's passphrase
    is not supported here)."""

    ca_certs: str | None = None
    """PEM file of the CA certificates to trust (None: the system's)."""
    certfile: str | None = None
    """PEM file of this client's certificate, for servers with ``tls-auth-clients yes``."""
    keyfile: str | None = None
    """PEM file of that certificate's private key."""
    cert_reqs: str = "required"
    """``required`` (default), ``optional`` or ``none`` (no check: only for tests)."""
    check_hostname: bool = True
    """Match the server's certificate against the host name (off when ``cert_reqs="none"``)."""

    def kwargs(self) -> dict[str, Any]:
        """redis-py's keyword arguments for an SSL connection."""
        out: dict[str, Any] = {
            "ssl_cert_reqs": self.cert_reqs,
            "ssl_check_hostname": self.check_hostname and self.cert_reqs != "none",
        }
        for name, value in (
            ("ssl_ca_certs", self.ca_certs),
            ("ssl_certfile", self.certfile),
            ("ssl_keyfile", self.keyfile),
        ):
            if value is not None:
                out[name] = value
        return out


def _flag(name: str, text: object) -> bool:
    if isinstance(text, bool):
        return text
    value = str(text).lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigurationError(f"{name} must be true or false, not {text!r}")


def tls_from(
    query: Mapping[str, list[str]], given: Mapping[str, Any], *, scheme_tls: bool, unix: bool
) -> tuple[bool, TlsOptions]:
    """Whether TLS is on and its options, from the URL ``query`` and the keywords ``given``
    (keywords win). Raises :class:`ConfigurationError` for TLS options without TLS, an
    unknown ``ssl_cert_reqs``, or a certificate file that does not exist."""
    found: dict[str, Any] = {k: v[0] for k, v in query.items() if k in TLS_OPTIONS and v}
    found.update({k: v for k, v in given.items() if v is not None})
    on = scheme_tls
    if "ssl" in query:
        on = on or _flag("ssl", query["ssl"][0])
    if found and not on:
        raise ConfigurationError(
            f"{', '.join(sorted(found))} given without TLS: use rediss:// (rediss+sentinel://, "
            "rediss+cluster://) or ?ssl=true"
        )
    if on and unix:
        raise ConfigurationError("TLS over a unix:// socket is not supported")
    cert_reqs = str(found.get("ssl_cert_reqs", "required")).lower()
    if cert_reqs not in _CERT_REQS:
        raise ConfigurationError(f"ssl_cert_reqs must be one of {_CERT_REQS}, not {cert_reqs!r}")
    options = TlsOptions(
        ca_certs=found.get("ssl_ca_certs"),
        certfile=found.get("ssl_certfile"),
        keyfile=found.get("ssl_keyfile"),
        cert_reqs=cert_reqs,
        check_hostname=_flag("ssl_check_hostname", found.get("ssl_check_hostname", True)),
    )
    for name, path in (
        ("ssl_ca_certs", options.ca_certs),
        ("ssl_certfile", options.certfile),
        ("ssl_keyfile", options.keyfile),
    ):
        if path is not None and not os.path.isfile(path):
            raise ConfigurationError(f"{name}: no such file {path!r}")
    if options.keyfile is not None and options.certfile is None:
        raise ConfigurationError("ssl_keyfile needs ssl_certfile (the certificate it belongs to)")
    return on, options
