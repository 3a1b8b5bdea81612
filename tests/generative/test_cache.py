"""Online LRU feature cache."""

from __future__ import annotations

import pytest
import torch

from vega3d.generative.cache import FeatureCache


def test_lru_keeps_the_most_recent_and_counts_hits():
    cache = FeatureCache(capacity=2)
    computed: list[str] = []

    def compute(tag: str):
        def run() -> torch.Tensor:
            computed.append(tag)
            return torch.full((1, 2, 1, 1), float(len(computed)))
        return run

    a = cache.get_or_compute("s0", [0, 10], compute("a"))
    cache.get_or_compute("s1", [0, 10], compute("b"))
    assert torch.equal(cache.get_or_compute("s0", [0, 10], compute("a2")), a)  # hit, s0 now most recent
    cache.get_or_compute("s2", [0], compute("c"))  # evicts s1
    assert ("s1", (0, 10)) not in cache and ("s0", (0, 10)) in cache and len(cache) == 2
    cache.get_or_compute("s1", [0, 10], compute("b2"))
    assert computed == ["a", "b", "c", "b2"]
    assert (cache.hits, cache.misses) == (1, 4)
    assert FeatureCache.key("s0", [0, 10]) != FeatureCache.key("s0", [0, 20])


def test_zero_capacity_never_stores():
    cache = FeatureCache(capacity=0)
    cache.get_or_compute("s", [0], lambda: torch.zeros(1))
    cache.get_or_compute("s", [0], lambda: torch.zeros(1))
    assert len(cache) == 0 and cache.misses == 2
    with pytest.raises(ValueError):
        FeatureCache(capacity=-1)
