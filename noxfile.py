"""Developer sessions: ``nox -s tests lint typecheck bench docs examples``."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

PY_SRC = ["src", "tests", "benchmarks", "examples", "noxfile.py"]


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
def examples(session: nox.Session) -> None:
    session.install("-e", ".[test,fast,embedded]")
    session.run("python", "-m", "examples", *session.posargs)


@nox.session
def docs(session: nox.Session) -> None:
    session.install("-e", ".", "mkdocs")
    session.run("mkdocs", "build", "--strict", "--site-dir", "build/docs")
