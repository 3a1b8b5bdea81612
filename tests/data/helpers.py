"""Shared test data: a SMALL synthetic data root (2 train, 1 val, 1 test scenes, 16 frames of 160x120)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vega3d.config import SyntheticConfig
from vega3d.data import scannet
from vega3d.data.layout import DataLayout
from vega3d.testing.synthetic import SceneTruth, synthesize_scenes

SMALL_CONFIG = SyntheticConfig(num_train=2, num_val=1, num_test=1, frames=16, width=160, height=120, seed=7)


def make_small_root(root: str | Path, cfg: SyntheticConfig = SMALL_CONFIG) -> list[SceneTruth]:
    """Synthesise the small data root under ``root`` and return the truth of its scenes."""
    return synthesize_scenes(root, cfg)


def aligned_mesh_vertices(layout: DataLayout, scene: str) -> np.ndarray:
    """Mesh vertices of a scene moved into the aligned frame: [N, 3] float64."""
    vertices = scannet.read_mesh(layout.mesh_path(scene)).vertices.astype(np.float64)
    axis_align = scannet.read_axis_alignment(layout.scan_meta_path(scene))
    return vertices @ axis_align[:3, :3].T + axis_align[:3, 3]


def distance_to_surfaces(points: np.ndarray, truth: SceneTruth) -> np.ndarray:
    """Distance of aligned points [N, 3] to the nearest true surface (box faces, floor, walls): [N]."""
    points = np.asarray(points, dtype=np.float64)
    sx, sy, _ = truth.room
    distance = np.minimum.reduce(
        [np.abs(points[:, 2]), np.abs(np.abs(points[:, 0]) - sx / 2), np.abs(np.abs(points[:, 1]) - sy / 2)]
    )
    for obj in truth.objects:
        box = np.asarray(obj.box)
        low, high = box[:3] - box[3:] / 2, box[:3] + box[3:] / 2
        outside = np.linalg.norm(np.maximum(np.maximum(low - points, points - high), 0.0), axis=1)
        inside = np.minimum(points - low, high - points).min(axis=1)
        distance = np.minimum(distance, np.where(outside > 0, outside, np.abs(inside)))
    return distance
