"""The pure core every layer builds on: keys and tags (``keys.py``) and policy (``policy.py``):
TTLs, freshness verdicts, backoff and the circuit breaker, as functions of ``(now, entry)``."""
