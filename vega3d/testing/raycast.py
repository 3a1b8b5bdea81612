"""Vectorised numpy ray casting of axis-aligned boxes inside an open-top room (the synthetic renderer).

Rays are cast through integer pixel coordinates with camera z = 1, so the ray parameter of a hit is the
pixel's z-depth. Each box is only tested on the pixels of its projected bounding rectangle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vega3d.data.geometry import camera_rays

WALL = -2  # hit id of the walls and floor
NOTHING = -1  # hit id of rays that leave the room (open ceiling) or go beyond range
LIGHT = np.array([0.35, 0.55, 0.76])  # direction towards a distant light (unit length, roughly)


@dataclass
class RoomGeometry:
    """What is rendered, in the aligned frame: a room [room_lo, room_hi] without ceiling plus boxes."""

    room_lo: np.ndarray  # [3]
    room_hi: np.ndarray  # [3]
    box_lo: np.ndarray  # [B, 3]
    box_hi: np.ndarray  # [B, 3]
    box_rgb: np.ndarray  # [B, 3] uint8
    wall_rgb: tuple[int, int, int] = (206, 196, 178)
    floor_rgb: tuple[int, int, int] = (150, 120, 92)


def _box_rectangle(
    lo: np.ndarray, hi: np.ndarray, world2cam: np.ndarray, intrinsic: np.ndarray, height: int, width: int
) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (v0, v1, u0, u1) holding the box's projection; None when it is behind the camera."""
    corners = np.stack(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij"), axis=-1).reshape(8, 3)
    cam = corners @ world2cam[:3, :3].T + world2cam[:3, 3]  # [8, 3]
    if (cam[:, 2] <= 1e-3).all():
        return None
    if (cam[:, 2] <= 1e-3).any():
        return 0, height, 0, width
    u = intrinsic[0, 0] * cam[:, 0] / cam[:, 2] + intrinsic[0, 2]
    v = intrinsic[1, 1] * cam[:, 1] / cam[:, 2] + intrinsic[1, 2]
    u0, u1 = int(np.clip(np.floor(u.min()) - 1, 0, width)), int(np.clip(np.ceil(u.max()) + 2, 0, width))
    v0, v1 = int(np.clip(np.floor(v.min()) - 1, 0, height)), int(np.clip(np.ceil(v.max()) + 2, 0, height))
    if u0 >= u1 or v0 >= v1:
        return None
    return v0, v1, u0, u1


def cast_rays(
    geometry: RoomGeometry, cam2world: np.ndarray, intrinsic: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nearest hit of every pixel ray of a camera (aligned frame, OpenCV axes).

    Returns:
        depth: [H, W] float32 z-depth in metres (0 where nothing is hit), hit: [H, W] int32 box index,
        WALL or NOTHING, axis: [H, W] int8 axis of the surface normal (0 x, 1 y, 2 z),
        rays: [3, H, W] float32 ray directions with camera z = 1 (one plane per world axis).
    """
    rotation, origin = cam2world[:3, :3], cam2world[:3, 3]
    a_u, b_v = camera_rays(intrinsic, height, width)
    rays = np.empty((3, height, width), dtype=np.float32)
    for k in range(3):  # R @ (a_u, b_v, 1) is separable in u and v
        rays[k] = (b_v * rotation[k, 1] + rotation[k, 2]).astype(np.float32)[:, None] + (a_u * rotation[k, 0]).astype(
            np.float32
        )
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = np.float32(1.0) / rays  # [3, H, W]
        # Room: each axis leaves through the face it points at; the smallest exit parameter wins (fmin skips NaN).
        t_room = [
            np.where(rays[k] > 0, np.float32(geometry.room_hi[k] - origin[k]), np.float32(geometry.room_lo[k] - origin[k]))
            * inv[k]
            for k in range(3)
        ]
        depth = np.fmin(np.fmin(t_room[0], t_room[1]), t_room[2])
        axis = np.where(t_room[0] == depth, 0, np.where(t_room[1] == depth, 1, 2)).astype(np.int8)
        hit = np.where((axis == 2) & (rays[2] > 0), NOTHING, WALL).astype(np.int32)
        world2cam = np.linalg.inv(cam2world)
        for b in range(len(geometry.box_lo)):
            rect = _box_rectangle(geometry.box_lo[b], geometry.box_hi[b], world2cam, intrinsic, height, width)
            if rect is None:
                continue
            window = np.s_[rect[0]:rect[1], rect[2]:rect[3]]
            t_near = t_far = near_axis = None
            for k in range(3):
                inv_k = inv[k][window]  # [h, w]
                t1 = np.float32(geometry.box_lo[b, k] - origin[k]) * inv_k
                t2 = np.float32(geometry.box_hi[b, k] - origin[k]) * inv_k
                t_in, t_out = np.minimum(t1, t2), np.maximum(t1, t2)
                if t_near is None:
                    t_near, t_far, near_axis = t_in, t_out, np.zeros(t_in.shape, dtype=np.int8)
                else:
                    np.copyto(near_axis, np.int8(k), where=t_in > t_near)
                    np.maximum(t_near, t_in, out=t_near)
                    np.minimum(t_far, t_out, out=t_far)
            closer = (t_near <= t_far) & (t_near > 0) & (t_near < depth[window])
            np.copyto(depth[window], t_near, where=closer)
            np.copyto(hit[window], b, where=closer)
            np.copyto(axis[window], near_axis, where=closer)
    depth[hit == NOTHING] = 0.0
    return depth, hit, axis, rays


def shade(
    geometry: RoomGeometry, depth: np.ndarray, hit: np.ndarray, axis: np.ndarray, rays: np.ndarray, origin: np.ndarray
) -> np.ndarray:
    """Lambert-shaded colour of the hits: uint8 [H, W, 3]; the floor has a 0.5 m checker pattern.

    Every (surface, normal axis) pair has one colour, so shading is a single lookup into a small table.
    """
    num_boxes = len(geometry.box_rgb)
    base = np.concatenate(
        [np.asarray(geometry.box_rgb, dtype=np.float64).reshape(-1, 3),
         np.array([(0, 0, 0), geometry.wall_rgb], dtype=np.float64)]
    )  # [B + 2, 3]: boxes, then NOTHING (-1 -> B), WALL (-2 -> B + 1)
    light = 0.55 + 0.45 * np.abs(LIGHT)  # [3] brightness of a face whose normal is axis k
    floor_rgb = np.asarray(geometry.floor_rgb, dtype=np.float64) * light[2]
    table = np.concatenate([(base[:, None, :] * light[None, :, None]).reshape(-1, 3),
                            [floor_rgb, floor_rgb * 0.85]])  # [(B + 2) * 3 + 2, 3]
    table = np.clip(np.rint(table), 0, 255).astype(np.uint8)
    surface = np.where(hit >= 0, hit, num_boxes - hit - 1)
    code = surface * 3 + axis
    floor = (hit == WALL) & (axis == 2)
    reach = np.where(np.isfinite(depth), depth, 0.0)  # no-hit rays (inf) are never floor: any finite value does
    x = origin[0] + reach * rays[0]
    y = origin[1] + reach * rays[1]
    checker = (np.floor(x * 2.0) + np.floor(y * 2.0)) % 2  # 0.5 m tiles
    code = np.where(floor, (num_boxes + 2) * 3 + checker.astype(np.int32), code)
    return table[code]


def render(
    geometry: RoomGeometry, cam2world: np.ndarray, intrinsic: np.ndarray, height: int, width: int, max_depth: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 [H, W, 3], depth float32 [H, W] metres (0 = nothing or beyond max_depth), hit ids [H, W]."""
    depth, hit, axis, rays = cast_rays(geometry, cam2world, intrinsic, height, width)
    rgb = shade(geometry, depth, hit, axis, rays, cam2world[:3, 3])
    depth[depth > max_depth] = 0.0
    return rgb, depth, hit
