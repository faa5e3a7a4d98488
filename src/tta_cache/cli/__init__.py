"""The ``tta-cache`` command line: the demo, health, stats, invalidation, cleanup, purges, erasure.

Every command but ``demo`` talks to the Redis named by ``--redis-url`` (else
``$TTA_CACHE_REDIS_URL``, else ``redis://127.0.0.1:6379/0``) and prints URLs with the password
masked. ``--json`` prints one JSON document on stdout for scripts; exit codes are listed in
``tta-cache --help``.

==================  ==========================================================================
``app``             :func:`main`: dispatch, logging, exit codes
``parser``          :func:`build_parser`: every command's arguments
``common``          exit codes, the Redis URL and Cache, printing results, dry run first
``progress``        :class:`Progress`, the progress line on stderr
``demo``            ``demo``
``status``          ``health``, ``stats``
``maintenance``     ``invalidate``, ``cleanup``, ``purge``
``privacy``         ``forget-user``, ``anonymize-user``
``keys``            ``keygen``, ``rotate-keys``
==================  ==========================================================================
"""

from __future__ import annotations

from .app import main
from .common import EXIT_CONFIRM, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE
from .parser import build_parser
from .progress import Progress

__all__ = [
    "EXIT_CONFIRM",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Progress",
    "build_parser",
    "main",
]
