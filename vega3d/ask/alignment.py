"""Estimate a scene's axis alignment (input frame -> z-up, wall-aligned frame) when a capture has none.

The ScanNet alignment puts the floor at z = 0, z up, the walls along x and y and the room centred in x, y.
Estimated from the back-projected depth of (a subset of) the frames, with per-pixel normals from the depth grid:
1. up: start from the mean camera up vector (captures are held upright), then the mean of the normals within
   ``cone`` degrees of it, iterated (the floor and every horizontal surface share that normal);
2. walls: normals within ``cone`` of horizontal; their angles in the floor plane, folded by 4 (a Manhattan room
   has walls every 90 degrees), give the dominant wall direction as a circular mean; that direction is x,
   taken from the 4 symmetric choices as the one closest to the input's own x axis (a rectangular room gives
   no way to tell them apart, and neither does ScanNet's own convention);
3. floor: the lowest height with many up-facing points; centre: the middle of the wall points' extent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vega3d.data.frames import load_scene_frames, scene_frame_ids
from vega3d.data.geometry import world_coordinates
from vega3d.data.layout import DataLayout


@dataclass
class OrientedPoints:
    """Points with unit normals facing the camera that saw them, in one frame of reference."""

    points: np.ndarray  # [N, 3]
    normals: np.ndarray  # [N, 3]
    camera_up: np.ndarray  # [3] mean of the cameras' up vectors (OpenCV -y)


def grid_normals(xyz: np.ndarray, valid: np.ndarray, eye: np.ndarray, step: int = 2,
                 max_edge: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """One frame's world points [H, W, 3] -> (points [N, 3], normals [N, 3]) every ``step`` pixels, the normal
    from the neighbours ``step`` pixels right and down, oriented towards the camera at ``eye``; pixels next to a
    depth edge (a neighbour farther than ``max_edge`` times the distance to the camera) or invalid depth are dropped."""
    p = xyz[:-step:step, :-step:step].astype(np.float64)
    right = xyz[:-step:step, step::step][: p.shape[0], : p.shape[1]] - p
    down = xyz[step::step, :-step:step][: p.shape[0], : p.shape[1]] - p
    ok = valid[:-step:step, :-step:step] & valid[:-step:step, step::step][: p.shape[0], : p.shape[1]]
    ok &= valid[step::step, :-step:step][: p.shape[0], : p.shape[1]]
    limit = max_edge * np.linalg.norm(p - eye, axis=-1)
    ok &= (np.linalg.norm(right, axis=-1) < limit) & (np.linalg.norm(down, axis=-1) < limit)
    normal = np.cross(right, down)
    length = np.linalg.norm(normal, axis=-1)
    ok &= length > 0
    points, normal = p[ok], normal[ok] / length[ok][:, None]
    flip = np.einsum("nc,nc->n", normal, eye - points) < 0
    normal[flip] *= -1.0
    return points, normal


def oriented_points(layout: DataLayout, scene: str, axis_align: np.ndarray | None = None,
                    max_frames: int = 24, step: int = 2) -> OrientedPoints:
    """Back-projected points and normals of up to ``max_frames`` evenly spread frames, in the frame
    ``axis_align`` @ raw (the raw input frame when None)."""
    ids = scene_frame_ids(layout, scene)
    picked = [ids[i] for i in np.unique(np.linspace(0, len(ids) - 1, min(max_frames, len(ids))).astype(int))]
    frames = load_scene_frames(layout, scene, picked)
    align = np.eye(4) if axis_align is None else np.asarray(axis_align, dtype=np.float64)
    xyz, valid = world_coordinates(frames.depth, frames.depth_intrinsic, frames.cam2world, align)
    poses = align @ frames.cam2world  # [V, 4, 4]
    parts = [grid_normals(xyz[v], valid[v], poses[v, :3, 3], step) for v in range(len(picked))]
    up = -poses[:, :3, 1].mean(axis=0)
    return OrientedPoints(np.concatenate([p for p, _ in parts]), np.concatenate([n for _, n in parts]),
                          up / np.linalg.norm(up))


def _refine_axis(normals: np.ndarray, start: np.ndarray, cone: float, iterations: int = 5) -> np.ndarray:
    axis = start / np.linalg.norm(start)
    for _ in range(iterations):
        near = normals[normals @ axis > np.cos(np.radians(cone))]
        if not len(near):
            break
        axis = near.mean(axis=0)
        axis /= np.linalg.norm(axis)
    return axis


def estimate_rotation(normals: np.ndarray, camera_up: np.ndarray, cone: float = 10.0) -> np.ndarray:
    """[3, 3] rotation whose rows are the aligned x, y, z axes in the input frame (see the module docstring)."""
    up = _refine_axis(normals, _refine_axis(normals, camera_up, 30.0), cone)
    seed = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(up, seed)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    horizontal = normals[np.abs(normals @ up) < np.sin(np.radians(cone))]
    if len(horizontal) < 10:
        raise ValueError("too few wall points to estimate the axis alignment; give the alignment explicitly")
    angles = np.arctan2(horizontal @ e2, horizontal @ e1)
    dominant = np.angle(np.exp(4j * angles).mean()) / 4.0
    for _ in range(3):  # refine on the inliers within the cone (mod 90 degrees)
        offset = np.angle(np.exp(4j * (angles - dominant))) / 4.0
        inliers = np.abs(offset) < np.radians(cone)
        dominant += offset[inliers].mean() if inliers.any() else 0.0
    # of the 4 symmetric choices, the one whose x is closest to the input's own x axis
    choices = dominant + np.arange(4) * np.pi / 2
    xs = np.cos(choices)[:, None] * e1 + np.sin(choices)[:, None] * e2  # [4, 3]
    x_axis = xs[int(np.argmax(xs[:, 0] if abs(up[0]) < 0.9 else xs[:, 1]))]
    return np.stack([x_axis, np.cross(up, x_axis), up])


def estimate_alignment(cloud: OrientedPoints, cone: float = 10.0) -> np.ndarray:
    """[4, 4] input -> aligned: rotation from ``estimate_rotation``, floor to z = 0, room centred in x, y."""
    rotation = estimate_rotation(cloud.normals, cloud.camera_up, cone)
    points = cloud.points @ rotation.T
    normals = cloud.normals @ rotation.T
    up_facing = normals[:, 2] > np.cos(np.radians(cone))
    heights = points[up_facing, 2]
    if not len(heights):
        raise ValueError("no floor points seen; give the alignment explicitly")
    lowest = np.percentile(heights, 1.0)
    floor = float(np.median(heights[heights < lowest + 0.05]))
    walls = np.abs(normals[:, 2]) < np.sin(np.radians(cone))
    lo = np.percentile(points[walls, :2], 0.5, axis=0)
    hi = np.percentile(points[walls, :2], 99.5, axis=0)
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -np.array([*(lo + hi) / 2.0, floor])
    return matrix


def estimate_scene_alignment(layout: DataLayout, scene: str) -> np.ndarray:
    """The estimated [4, 4] input -> aligned matrix of a staged scene (poses in the input frame)."""
    return estimate_alignment(oriented_points(layout, scene))
