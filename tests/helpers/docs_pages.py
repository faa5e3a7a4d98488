"""Reading the documentation pages in tests: the tables under a heading, the names in a column."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

_CODE = re.compile(r"`([^`]+)`")


def section(page: str, heading: str) -> str:
    """The text of ``page`` (a file in docs/) under the heading whose text is ``heading``, up to
    the next heading of the same or a higher level."""
    lines = (DOCS / page).read_text(encoding="utf-8").splitlines()
    start = level = None
    for i, line in enumerate(lines):
        m = re.match(r"(#+)\s+(.*)", line)
        if not m:
            continue
        if start is None and m.group(2).strip() == heading:
            start, level = i + 1, len(m.group(1))
        elif start is not None and level is not None and len(m.group(1)) <= level:
            return "\n".join(lines[start:i])
    if start is None:
        raise AssertionError(f"no heading {heading!r} in docs/{page}")
    return "\n".join(lines[start:])


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first Markdown table in ``text``, as lists of cells."""
    rows: list[list[str]] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if in_table and not set("".join(cells)) <= set("-: "):
                rows.append(cells)
            in_table = True
        elif in_table:
            break
    if not rows:
        raise AssertionError(f"no table in {text[:80]!r}...")
    return rows


def code_names(cell: str) -> list[str]:
    """The names in backticks in a cell, without what follows a space (``--user USER_ID``)."""
    return [code.split()[0] for code in _CODE.findall(cell)]


def first_column(page: str, heading: str) -> dict[str, list[str]]:
    """Each name in the first column of the table under ``heading`` -> its row's other cells."""
    out: dict[str, list[str]] = {}
    for row in table_rows(section(page, heading)):
        for name in code_names(row[0]):
            assert name not in out, f"{name} documented twice under {heading!r}"
            out[name] = row[1:]
    return out
