"""Quick start: cache a loader in L1 + Redis, invalidate it from a writer.

Run ``python examples/quickstart.py``: it uses ``$TTA_CACHE_REDIS_URL`` if set, else starts an
embedded redis-server (``pip install 'tta-cache[embedded]'``) and removes it after.
"""

from __future__ import annotations

import os

import tta_cache as tc
from tta_cache.operations import EmbeddedRedis
from tta_cache.tta import SessionState


def main(redis_url: str) -> None:
    with tc.Cache(redis_url, namespace="quickstart") as cache:
        loads: list[str] = []

        @cache.cached_session  # kind "session", tagged session:{session_id}
        def load_session(session_id: str) -> SessionState:
            loads.append(session_id)  # stands for the slow database read
            return SessionState(session_id, "user_456", narrative_position=len(loads))

        @cache.invalidates(session="{session_id}")  # every process drops the old state
        def make_choice(session_id: str, choice: str) -> None: ...  # write to the database

        assert load_session("session_123") == load_session("session_123")  # 2nd read: L1 hit
        make_choice("session_123", "listen to the guide")
        assert load_session("session_123").narrative_position == 2  # reloaded after the write
        print(f"loads: {len(loads)}, hit rate: {cache.stats()['hit_rate']:.0%}")


if __name__ == "__main__":
    url = os.environ.get("TTA_CACHE_REDIS_URL")
    if url:
        main(url)
    else:
        with EmbeddedRedis() as server:
            main(server.url)
