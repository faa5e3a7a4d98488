"""The built documentation site: no link, image, stylesheet or script of any page points at a
file that is not there, and the front page and the performance page render in headless Chromium
(Debian's ``chromium``) without a request that fails; their screenshots are saved under
``build/screenshots/``.

The site is ``build/docs`` when it is newer than every source (``nox -s docs`` and ``.ci/run``
build it there), else it is built with mkdocs into a temporary directory; without mkdocs (the
``docs`` extra) and without a current build the tests are skipped with the reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILT = ROOT / "build" / "docs"
SCREENSHOTS = ROOT / "build" / "screenshots"
PAGES = {"index": "index.html", "performance": "performance/index.html"}


def _newest_source() -> float:
    sources = [ROOT / "mkdocs.yml", *(ROOT / "docs").rglob("*"), *(ROOT / "src").rglob("*.py")]
    return max(p.stat().st_mtime for p in sources if p.is_file())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    index = BUILT / "index.html"
    if index.is_file() and index.stat().st_mtime >= _newest_source():
        return BUILT
    try:
        import material  # noqa: F401
        import mkdocs  # noqa: F401
    except ImportError:
        pytest.skip("the docs are not built and mkdocs is not installed: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(found["id"] or "")
        for attr in ("href", "src"):
            target = found.get(attr)
            if target and tag in ("a", "img", "link", "script", "source", "iframe"):
                self.links.append((tag, target))


@functools.cache
def _parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _target(site: Path, page: Path, link: str) -> tuple[Path, str] | None:
    """The file a relative link of ``page`` names and its fragment; None for other sites."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or link.startswith(("mailto:", "data:", "javascript:")):
        return None
    if not parts.path:
        return page, parts.fragment
    base = site if parts.path.startswith("/") else page.parent  # 404.html links from the root
    path = (base / unquote(parts.path).lstrip("/")).resolve()
    if path.is_dir() or parts.path.endswith("/"):
        path = path / "index.html"
    return path, parts.fragment


def test_every_link_and_image_of_every_page_is_there(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert {site / p for p in PAGES.values()} <= set(pages)
    broken = []
    for page in pages:
        for tag, link in _parse(page).links:
            found = _target(site, page, link)
            if found is None:
                continue
            path, fragment = found
            if not path.is_file() or site.resolve() not in path.parents:
                broken.append(f"{page.relative_to(site)}: <{tag}> {link}")
            elif fragment and path.suffix == ".html" and fragment not in _parse(path).ids:
                broken.append(f"{page.relative_to(site)}: <{tag}> {link} (no such anchor)")
    assert not broken, "\n".join(broken)


def test_the_front_page_and_the_performance_page_show_their_images(site: Path) -> None:
    for page in PAGES.values():
        images = [link for tag, link in _parse(site / page).links if tag == "img"]
        assert any(link.endswith("throughput.png") for link in images), page


# --- in a real browser -------------------------------------------------------------------------


def _chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no chromium on PATH (Debian: apt-get install chromium): screenshots not taken")


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """The site over HTTP on a free loopback port, and the (path, status) of every request."""
    requests: list[tuple[str, int]] = []

    class Handler(SimpleHTTPRequestHandler):
        def log_request(self, code: Any = "-", size: Any = "-") -> None:
            requests.append((self.path, int(code) if str(code).isdigit() else 0))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _browse(chromium: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium with a profile of its own in ``home`` (a fresh one per page, so
    nothing is served from an earlier page's cache and every request reaches the server)."""
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # runs as root in CI
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={home}",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "HOME": str(home)},
    )


@pytest.mark.parametrize("name", sorted(PAGES))
def test_the_page_renders_in_chromium_with_every_request_answered(
    name: str, served: tuple[str, list[tuple[str, int]]], tmp_path: Path
) -> None:
    chromium = _chromium()
    base, requests = served
    url = base + PAGES[name].removesuffix("index.html")
    del requests[:]
    dom = _browse(chromium, tmp_path / "dom", "--virtual-time-budget=5000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr
    assert "<img" in dom.stdout
    assert "throughput.png" in dom.stdout
    failed = [(path, status) for path, status in requests if status >= 400]
    assert not failed, failed
    fetched = {path for path, _ in requests}
    assert any(path.endswith("throughput.png") for path in fetched), sorted(fetched)
    assert any(path.endswith(".css") for path in fetched), sorted(fetched)

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    png = SCREENSHOTS / f"{name}.png"
    png.unlink(missing_ok=True)
    shot = _browse(
        chromium,
        tmp_path / "shot",
        "--window-size=1280,1800",
        "--virtual-time-budget=5000",
        f"--screenshot={png}",
        url,
    )
    assert shot.returncode == 0, shot.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000, len(data)  # a page with text and a plot, not a blank frame
