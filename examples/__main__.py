"""``python -m examples``: run every example in this directory; exit 1 if any fails.

Each example runs as its own ``python examples/<name>.py`` process (from the repository root),
so one cannot leak state into the next. ``python -m examples quickstart`` runs only the named ones.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TIMEOUT = 300.0


def examples(names: list[str]) -> list[Path]:
    found = sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_"))
    if not names:
        return found
    chosen = [p for p in found if p.stem in names]
    missing = set(names) - {p.stem for p in chosen}
    if missing:
        raise SystemExit(f"no such example: {', '.join(sorted(missing))}")
    return chosen


def run(path: Path) -> bool:
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(path)],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"FAIL  {path.name}: still running after {TIMEOUT:.0f}s")
        return False
    elapsed = time.monotonic() - started
    if done.returncode == 0:
        print(f"ok    {path.name} ({elapsed:.1f}s)")
        return True
    print(f"FAIL  {path.name} (exit {done.returncode}, {elapsed:.1f}s)")
    for stream in (done.stdout, done.stderr):
        if stream.strip():
            print("      " + stream.strip().replace("\n", "\n      "))
    return False


def main(argv: list[str]) -> int:
    paths = examples(argv)
    failed = [p.name for p in paths if not run(p)]
    print(f"{len(paths) - len(failed)} of {len(paths)} examples passed")
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
