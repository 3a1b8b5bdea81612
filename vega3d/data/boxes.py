"""Axis-aligned 3D boxes as [cx, cy, cz, dx, dy, dz] (SPEC.md section 4): IoU and boxes from points."""

from __future__ import annotations

import numpy as np


def box_corners(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[..., 6] centre/size boxes -> (min corner [..., 3], max corner [..., 3])."""
    boxes = np.asarray(boxes, dtype=np.float64)
    half = boxes[..., 3:6] / 2.0
    return boxes[..., :3] - half, boxes[..., :3] + half


def box_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every pair: [N, 6] x [M, 6] -> [N, M]; inter / (vol1 + vol2 - inter + 1e-8)."""
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 6)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 6)
    a_min, a_max = box_corners(a[:, None, :])
    b_min, b_max = box_corners(b[None, :, :])
    overlap = np.clip(np.minimum(a_max, b_max) - np.maximum(a_min, b_min), 0.0, None)
    inter = overlap.prod(axis=-1)
    vol_a = a[:, None, 3:6].prod(axis=-1)
    vol_b = b[None, :, 3:6].prod(axis=-1)
    return inter / (vol_a + vol_b - inter + 1e-8)


def box_from_points(points: np.ndarray) -> np.ndarray:
    """Tightest axis-aligned box [cx, cy, cz, dx, dy, dz] around [N, 3] points (N >= 1)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"box_from_points needs [N>=1, 3] points, got shape {points.shape}")
    low, high = points.min(axis=0), points.max(axis=0)
    return np.concatenate([(low + high) / 2.0, high - low])
