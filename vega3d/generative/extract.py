"""The extract stage: features of every sampled frame list of every scene, written once to the feature store.

For each scene of the chosen splits and each frame-sampling strategy, the frame list comes from
``vega3d.data.sampling.sample_frame_ids`` (budget ``data.frames_upbound``); identical lists are extracted
once. A key that already holds a valid file is skipped; a corrupted one is re-extracted. Scenes are split
across processes by ``shard_index`` / ``num_shards`` (scene i goes to shard i mod num_shards), and
``run_workers`` launches N such processes on one machine. The pipeline fans the extract step out over
``shard_indices(n)`` (one GPU each, one content-addressed store: a file's bytes depend only on its key, so any
sharding writes the same files) and joins the shards' feature ids with ``merge_feature_ids``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vega3d import storage
from vega3d.config import Vega3DConfig
from vega3d.data.frames import load_scene_frames
from vega3d.data.layout import DataLayout
from vega3d.data.sampling import load_selections, sample_frame_ids, selection_budget
from vega3d.generative.base import GenerativeEncoder
from vega3d.generative.store import FeatureSpec, FeatureStore, feature_key
from vega3d.logs import progress as progress_bar

logger = logging.getLogger(__name__)


@dataclass
class ExtractSummary:
    """What one extract run did."""

    feature_id: str
    uri: str
    scenes: int = 0
    written: int = 0
    skipped: int = 0
    seconds: float = 0.0
    keys: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {"scenes": self.scenes, "written": self.written, "skipped": self.skipped}


def feature_spec(encoder: GenerativeEncoder, cfg: Vega3DConfig) -> FeatureSpec:
    """The configuration (feature id) of an encoder's features."""
    gen = cfg.generative
    return FeatureSpec(
        encoder=encoder.encoder_id, fingerprint=encoder.fingerprint(), timestep=gen.timestep, block=gen.block,
        resolution=encoder.resolution, grid=encoder.grid, seed=gen.seed, crop=gen.crop, shift=gen.shift,
        channels=encoder.channels,
    )


def shard_scenes(layout: DataLayout, splits: Sequence[str], shard_index: int = 0, num_shards: int = 1) -> list[str]:
    """The scenes of one extract shard: every ``num_shards``-th of the sorted scenes of ``splits``."""
    return split_scenes(layout, splits)[shard_index::num_shards]


def split_scenes(layout: DataLayout, splits: Sequence[str]) -> list[str]:
    """Sorted unique scenes listed in ``metadata/scannetv2_<split>.txt`` of the given splits."""
    scenes: set[str] = set()
    for split in splits:
        path = layout.split_file_path(split)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing split list; run `vega3d data synth` or `vega3d data prep`")
        scenes.update(line.strip() for line in path.read_text().splitlines() if line.strip())
    return sorted(scenes)


def frame_lists(layout: DataLayout, scene: str, strategies: Sequence[str], budget: int,
                selections: dict | None = None) -> list[list[int]]:
    """The distinct frame lists of one scene under the given sampling strategies (``selections``: the
    coverage picks of the run's data settings, see ``load_selections``)."""
    lists: list[list[int]] = []
    for strategy in strategies:
        frames = sample_frame_ids(layout, scene, strategy, budget, selections)
        if frames not in lists:
            lists.append(frames)
    return lists


def frames_tensor(layout: DataLayout, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
    """RGB of the frames as [V, 3, H, W] float32 in [0, 1]."""
    rgb = load_scene_frames(layout, scene, frame_ids).rgb  # [V, H, W, 3] uint8
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float().div_(255.0)


def extract_features(
    cfg: Vega3DConfig,
    encoder: GenerativeEncoder,
    store_uri: str,
    splits: Sequence[str] = ("train", "val", "test"),
    strategies: Sequence[str] | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    progress: bool = True,
) -> ExtractSummary:
    """Extract this shard's scenes into the store; returns counts and the feature id."""
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard index {shard_index} must be in [0, {num_shards})")
    layout = DataLayout(cfg.data.root)
    store = FeatureStore(store_uri)
    spec = feature_spec(encoder, cfg)
    store.write_manifest(spec)
    scenes = shard_scenes(layout, splits, shard_index, num_shards)
    summary = ExtractSummary(feature_id=spec.feature_id, uri=store_uri)
    start = time.perf_counter()
    bar = progress_bar(scenes, desc=f"extract {spec.feature_id} [{shard_index}/{num_shards}]", unit="scene",
               disable=not progress)
    wanted = list(strategies or [cfg.data.sampling])
    selections = None if wanted == ["uniform"] else load_selections(  # the picks of this run's data settings
        layout, cfg.data.voxel_size, selection_budget(cfg.data.frames_upbound), cfg.data.mask_invalid_depth)
    for scene in bar:
        for frame_ids in frame_lists(layout, scene, wanted, cfg.data.frames_upbound, selections):
            key = feature_key(spec.feature_id, scene, frame_ids)
            summary.keys.append(key)
            if store.get(key) is not None:
                summary.skipped += 1
                continue
            features = encoder.encode(frames_tensor(layout, scene, frame_ids), scene, frame_ids)
            store.put(key, features.cpu(), scene, frame_ids)
            summary.written += 1
        summary.scenes += 1
        bar.set_postfix(written=summary.written, skipped=summary.skipped)
    summary.seconds = time.perf_counter() - start
    logger.info("%s: %d scenes, %d written, %d skipped in %.1fs", spec.feature_id, summary.scenes,
                summary.written, summary.skipped, summary.seconds)
    return summary


def shard_indices(num_shards: int) -> list[int]:
    """The shards of an extraction fanned out over ``num_shards`` processes or GPUs: [0, ..., num_shards - 1]."""
    if num_shards < 1:
        raise ValueError(f"extraction needs at least one shard, got num_shards={num_shards}")
    return list(range(num_shards))


def merge_feature_ids(feature_ids: Sequence[str]) -> str:
    """The one feature id the shards of an extraction wrote; fails naming them when they differ (the shards then
    ran different configurations or weights) or when there is none."""
    distinct = sorted(set(feature_ids))
    if len(distinct) != 1:
        raise ValueError(f"extract shards returned feature ids {distinct}; expected exactly one (same config and "
                         "weights on every shard)")
    return distinct[0]


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when available, else cpu; anything else as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def run_extract(cfg: Vega3DConfig, store_uri: str | None = None, device: str = "auto", **options: Any) -> ExtractSummary:
    """The extract API: build the encoder of a (path-resolved) config on ``device`` and extract into the store
    (default :func:`default_store_uri`); ``options`` are :func:`extract_features`'s (splits, strategies, shard
    index and count, progress)."""
    from vega3d.generative.registry import build_encoder

    encoder = build_encoder(cfg.generative, cfg.model.pooled_grid, resolve_device(device))
    return extract_features(cfg, encoder, store_uri or default_store_uri(cfg), **options)


def run_workers(base_args: Sequence[str], workers: int, shard_index: int, num_shards: int) -> None:
    """Run ``vega3d extract <base_args>`` in ``workers`` processes, each on its own shard of this shard.

    Worker i of shard s handles global shard s * workers + i of num_shards * workers; each gets
    ``cpu_count // workers`` threads. Fails naming the worker when one exits non-zero.
    """
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    procs = []
    for worker in range(workers):
        args = [sys.executable, "-m", "vega3d.cli", "extract", *base_args,
                "--shard-index", str(shard_index * workers + worker), "--num-shards", str(num_shards * workers),
                "--workers", "1"]
        procs.append(subprocess.Popen(args, env=env))
    failed = [i for i, proc in enumerate(procs) if proc.wait() != 0]
    if failed:
        raise RuntimeError(f"extract workers {failed} failed (see their logs above)")


def default_store_uri(cfg: Vega3DConfig) -> str:
    """generative.feature_root, else <data.root>/features."""
    return cfg.generative.feature_root or storage.join(cfg.data.root, "features")
