"""What the sync and asyncio Redis tiers share: configuration, figures, reply accounting."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .config import RedisConfig
from .figures import TierFigures
from .replies import LeaseReply, versions_reply

__all__ = ["TierBase"]

T = TypeVar("T")


class TierBase(Generic[T]):
    def __init__(self, cfg: RedisConfig, tag_ttl: Callable[[], int]) -> None:
        self.cfg = cfg
        self.cluster = cfg.mode == "cluster"
        self._tag_ttl = tag_ttl
        self.figures = TierFigures()

    def _versions_of(self, reply: Any, count: int) -> tuple[int, ...]:
        versions, replaced = versions_reply(reply, count)
        if replaced:
            self.figures.replaced(replaced)
        return versions

    def _lease_of(self, reply: LeaseReply) -> LeaseReply:
        if reply[3]:
            self.figures.replaced(reply[3])
        return reply
