"""Developer sessions: ``nox -s tests lint typecheck bench chaos docs examples fuzz``."""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

PY_SRC = ["src", "tests", "benchmarks", "chaos", "examples", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite; starts its own redis-server on a free loopback port."""
    session.install("-e", ".[test,fast]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, and the layers contract (import-linter: a lower layer never imports a higher one)."""
    session.install("-e", ".", "ruff", "import-linter>=2.1")
    session.run("ruff", "check", *PY_SRC)
    session.run("ruff", "format", "--check", *PY_SRC)
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test,fast]", "mypy", "types-cachetools")
    session.run("mypy", "--strict", "src/tta_cache")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against floors measured in the same run; prints ns/op and ratios."""
    session.install(
        "-e",
        ".[test,fast,bench]",
        "cachetools",
        "cashews",
        "aiocache",
        "matplotlib",
        "opentelemetry-instrumentation-redis",
        "dogpile.cache",
        "django-redis",
        "django",
    )
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def chaos(session: nox.Session) -> None:
    """Faults under load (docs/reliability.md): the full profile, 4 workers x (8 threads + 64
    tasks); ``nox -s chaos -- --soak 600`` soaks for 10 minutes instead (memory, connections);
    ``-- --profile short`` is the CI's. Exits 1 on a caller error or a stale read."""
    session.install("-e", ".[test]")
    args = list(session.posargs)
    if "--profile" not in args:
        args = ["--profile", "full", *args]
    session.run("python", "-m", "chaos", *args)


@nox.session
def examples(session: nox.Session) -> None:
    session.install("-e", ".[test,fast,embedded]")
    session.run("python", "-m", "examples", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs-material, the API reference from the docstrings) into
    build/docs, warnings as errors."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/docs")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Coverage-guided fuzzing (atheris) of the envelope decoder and the key encoder.

    ``nox -s fuzz`` runs one minute; ``nox -s fuzz -- 10`` ten; ``--no-venv`` fuzzes in the
    current environment (which must have atheris and cryptography). The corpus is kept in
    build/fuzz/corpus between runs; a crash writes its input to build/fuzz/ and fails the session.
    """
    minutes = float(session.posargs[0]) if session.posargs else 1.0
    if session.venv_backend != "none":  # --no-venv: the current environment, as it is
        session.install("-e", ".[test,crypto]", "atheris")
    corpus = Path("build/fuzz/corpus")
    corpus.mkdir(parents=True, exist_ok=True)
    session.run(
        "python",
        "tests/fuzz/fuzz_codec.py",
        f"-max_total_time={max(1, round(minutes * 60))}",
        "-artifact_prefix=build/fuzz/",
        "-print_final_stats=1",
        str(corpus),
        env={"PYTHONPATH": os.pathsep.join(["src", "tests"])},  # src: also with --no-venv
    )
