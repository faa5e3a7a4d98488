"""The progress line of long commands: drawn on stderr once an operation outlasts a delay."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """A one-line progress indicator on stderr, drawn only once an operation outlasts ``delay``.

    With a ``total`` it is a bar with a percentage; without, a spinner with a count. ``update()``
    is cheap (an attribute write); a daemon thread redraws ten times a second, so a callback-less
    operation still shows that it is alive. The line is erased when the block ends.
    """

    WIDTH = 24

    def __init__(
        self,
        label: str,
        *,
        enabled: bool,
        total: int | None = None,
        unit: str = "keys",
        delay: float = 0.5,
        stream: TextIO | None = None,
    ) -> None:
        self.label = label
        self.enabled = enabled
        self.total = total
        self.unit = unit
        self.delay = delay
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.drawn = 0  # width of the last line drawn
        self._started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, done: int, total: int | None = None) -> None:
        """Record progress (called from any thread)."""
        self.done = done
        if total is not None:
            self.total = total

    def line(self, elapsed: float) -> str:
        """The text drawn after ``elapsed`` seconds."""
        count = f"{self.done:,}" + (f"/{self.total:,}" if self.total else "")
        count = f"{count} {self.unit}".rstrip() if self.unit else ""
        if self.total:
            fraction = min(1.0, self.done / self.total)
            filled = round(fraction * self.WIDTH)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {fraction:4.0%}"
        else:
            bar = "|/-\\"[int(elapsed * 10) % 4]
        return "  ".join(part for part in (self.label, bar, count, f"{elapsed:.1f}s") if part)

    def _draw(self) -> None:
        text = self.line(time.monotonic() - self._started)
        self.stream.write("\r" + text.ljust(self.drawn))
        self.stream.flush()
        self.drawn = len(text)

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        while True:
            self._draw()
            if self._stop.wait(0.1):
                return

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(
                target=self._run, name="tta-cache-progress", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.drawn:
            self.stream.write("\r" + " " * self.drawn + "\r")
            self.stream.flush()
