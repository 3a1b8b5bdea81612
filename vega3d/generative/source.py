"""Where training and evaluation get generative features: online (encoder + LRU cache) or offline (store).

``open_feature_source(cfg, grid, device)`` returns an object with ``.channels`` and
``.get(scene, frame_ids, frames) -> [V, C, g, g]`` float32; ``frames`` ([V, 3, H, W] in [0, 1]) are only used
online.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vega3d.config import GenerativeConfig
from vega3d.generative.base import GenerativeEncoder
from vega3d.generative.cache import FeatureCache
from vega3d.generative.store import FeatureStore, FeatureStoreError, feature_key


class OnlineFeatures:
    """Features computed by a frozen encoder, memoised in a bounded LRU cache."""

    def __init__(self, encoder: GenerativeEncoder, capacity: int) -> None:
        self.encoder = encoder
        self.channels = encoder.channels
        self.cache = FeatureCache(capacity)

    def get(self, scene: str, frame_ids: Sequence[int], frames: torch.Tensor | None = None) -> torch.Tensor:
        if frames is None:
            raise ValueError(f"online generative features of {scene} need the frames")
        return self.cache.get_or_compute(scene, frame_ids, lambda: self.encoder.encode(frames, scene, frame_ids))


class OfflineFeatures:
    """Features read from the store by feature id; a missing or corrupted file is an error naming it."""

    def __init__(self, store: FeatureStore, feature_id: str) -> None:
        spec = store.read_manifest(feature_id)
        if spec is None:
            raise FeatureStoreError(
                f"{store.manifest_path(feature_id)}: missing; run `vega3d extract` or check generative.feature_id"
            )
        self.store, self.feature_id, self.channels = store, feature_id, spec.channels

    def get(self, scene: str, frame_ids: Sequence[int], frames: torch.Tensor | None = None) -> torch.Tensor:
        key = feature_key(self.feature_id, scene, frame_ids)
        features = self.store.get(key)
        if features is None:
            raise FeatureStoreError(f"{self.store.path(key)}: no features for {scene} {list(frame_ids)}; run `vega3d extract`")
        return features.float()


def open_feature_source(
    cfg: GenerativeConfig, grid: int, device: torch.device | str = "cpu", data_root: str = "data"
) -> OnlineFeatures | OfflineFeatures:
    """The feature source of a (path-resolved) generative config."""
    if cfg.mode == "offline":
        if not cfg.feature_id:
            raise ValueError("generative.mode=offline needs generative.feature_id (printed by `vega3d extract`)")
        from vega3d import storage

        return OfflineFeatures(FeatureStore(cfg.feature_root or storage.join(data_root, "features")), cfg.feature_id)
    from vega3d.generative.registry import build_encoder

    return OnlineFeatures(build_encoder(cfg, grid, device), cfg.cache_size)
