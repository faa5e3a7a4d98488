"""tta-cache benchmarks: each path against a floor measured in the same run.

``python -m benchmarks [--quick] [--json PATH]`` runs them all (``nox -s bench``); speed is
reported, never asserted.
"""
