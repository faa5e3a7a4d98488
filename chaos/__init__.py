"""The chaos suite (issue 13): faults under load against real redis-server, every read checked.

``python -m chaos`` (short profile), ``nox -s chaos`` (full), ``nox -s chaos -- --soak 600``.
See docs/reliability.md.
"""
