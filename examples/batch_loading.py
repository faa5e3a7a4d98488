"""Batch loading: the characters of a scene, each its own cache entry, loaded in one go.

A scene shows several non-player characters at once. ``@cache.cached_many`` reads them all from L1,
then the rest from Redis in one round trip, and calls the loader once with only the characters
still missing; one character's update drops only that character's entry, in every process.

Run ``python examples/batch_loading.py``: it uses ``$TTA_CACHE_REDIS_URL`` if set, else starts an
embedded redis-server (``pip install 'tta-cache[embedded]'``) and removes it after.
"""

from __future__ import annotations

import os

import tta_cache as tc
from tta_cache.operations import EmbeddedRedis
from tta_cache.tta import CharacterState

DATABASE = {  # stands for the character table
    "keeper": CharacterState("keeper", name="Ada", current_mood="wary"),
    "gull": CharacterState("gull", name="Skree", current_mood="curious"),
    "guide": CharacterState("guide", name="Tam", current_mood="calm"),
    "ferryman": CharacterState("ferryman", name="Oss", current_mood="tired"),
}


def main(redis_url: str) -> None:
    with tc.Cache(redis_url, namespace="batch_example") as cache:
        queries: list[list[str]] = []

        @cache.cached_many(
            kind="character",
            over="character_ids",
            tags=("session:{session_id}", "character:{item}"),
            lock=True,  # two processes loading overlapping scenes compute each character once
        )
        def load_characters(session_id: str, character_ids: list[str]) -> dict[str, CharacterState]:
            queries.append(character_ids)  # one query: WHERE character_id IN (...)
            return {c: DATABASE[c] for c in character_ids if c in DATABASE}

        @cache.invalidates(character="{character_id}")
        def set_mood(character_id: str, mood: str) -> None:
            DATABASE[character_id].current_mood = mood

        lighthouse = load_characters("s1", ["keeper", "gull", "nobody"])
        assert list(lighthouse) == ["keeper", "gull"]  # an unknown id is left out, not cached
        harbour = load_characters("s1", ["ferryman", "keeper", "guide"])
        assert queries == [["keeper", "gull", "nobody"], ["ferryman", "guide"]]  # keeper: cached
        assert harbour["keeper"].name == "Ada"

        set_mood("keeper", "hopeful")  # drops the keeper's entry only
        again = load_characters("s1", ["keeper", "gull", "guide", "ferryman"])
        assert queries[-1] == ["keeper"]
        assert again["keeper"].current_mood == "hopeful"
        assert load_characters.cache_key("s1", "keeper").startswith("batch_example:character:")
        print(f"queries: {queries}; hit rate {cache.stats()['hit_rate']:.0%}")


if __name__ == "__main__":
    url = os.environ.get("TTA_CACHE_REDIS_URL")
    if url:
        main(url)
    else:
        with EmbeddedRedis() as server:
            main(server.url)
