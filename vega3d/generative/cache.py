"""Online feature cache: a bounded LRU of ``[V, C, g, g]`` tensors keyed by (scene, frame list)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch

CacheKey = tuple[str, tuple[int, ...]]


class FeatureCache:
    """Keeps at most ``capacity`` feature sets (CPU tensors); the least recently used one is evicted first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        self.capacity = capacity
        self._items: OrderedDict[CacheKey, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(scene: str, frame_ids: Sequence[int]) -> CacheKey:
        return scene, tuple(int(f) for f in frame_ids)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._items

    def get_or_compute(
        self, scene: str, frame_ids: Sequence[int], compute: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """The cached features of (scene, frame_ids), computing and inserting them on a miss."""
        key = self.key(scene, frame_ids)
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        value = compute()
        if self.capacity:
            self._items[key] = value.detach().cpu()
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value
