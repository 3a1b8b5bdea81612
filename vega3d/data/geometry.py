"""Back-projection of depth into aligned world coordinates and voxel sets (SPEC.md section 1).

Per pixel (u, v) with depth z in metres: x = (u - cx) z / fx, y = (v - cy) z / fy, and
world = A · T_cam2world · [x, y, z, 1] with A the scan's axisAlignment. Depth 0 is invalid and masked (``mask_invalid=False``: the released
behaviour, back-projected onto the camera centre).

Voxel sets are ``unique(round(xyz / voxel_size))``; they are computed by an O(n) occupancy scatter over the
bounding grid of the points rather than by sorting (np.unique), see :func:`voxel_set`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# Bounding grids larger than this many cells fall back to sorting (np.unique) in voxel_set.
MAX_SCATTER_CELLS = 1 << 26


def camera_rays(depth_intrinsic: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image coordinates: ((u - cx) / fx [W] float64, (v - cy) / fy [H] float64)."""
    k = np.asarray(depth_intrinsic, dtype=np.float64)
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    return (np.arange(width) - cx) / fx, (np.arange(height) - cy) / fy


def _as_frames(depth_m: np.ndarray, cam2world: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """([V, H, W] float32 depth, [V, 4, 4] float64 poses, whether a single frame was given)."""
    depth = np.asarray(depth_m, dtype=np.float32)
    single = depth.ndim == 2
    depth = depth[None] if single else depth
    poses = np.asarray(cam2world, dtype=np.float64).reshape(-1, 4, 4)
    if len(poses) != len(depth):
        raise ValueError(f"{len(depth)} depth maps but {len(poses)} poses")
    return depth, poses, single


def _world_planes(
    depth: np.ndarray, depth_intrinsic: np.ndarray, poses: np.ndarray, axis_align: np.ndarray
) -> Iterator[tuple[int, np.ndarray]]:
    """Per frame i: (i, planes [3, H, W] float32 aligned x, y, z); the buffer is reused between frames.

    world_c = depth * (R @ (a_u, b_v, 1))_c + t_c, and the ray term is separable in u and v, so each plane
    costs one outer sum, one multiply and one add over contiguous memory.
    """
    num_frames, height, width = depth.shape
    a_u, b_v = camera_rays(depth_intrinsic, height, width)
    transforms = np.asarray(axis_align, dtype=np.float64) @ poses  # [V, 4, 4] camera -> aligned
    planes = np.empty((3, height, width), dtype=np.float32)
    for i in range(num_frames):
        rotation, translation = transforms[i, :3, :3], transforms[i, :3, 3]
        for c in range(3):
            column = (b_v * rotation[c, 1] + rotation[c, 2]).astype(np.float32)[:, None]  # [H, 1]
            row = (a_u * rotation[c, 0]).astype(np.float32)[None, :]  # [1, W]
            np.add(column, row, out=planes[c])
            planes[c] *= depth[i]
            planes[c] += np.float32(translation[c])
        yield i, planes


def _store(planes: np.ndarray, invalid: np.ndarray, out: np.ndarray) -> None:
    """Interleave planes [3, H, W] into out [H, W, 3], zero where invalid [H, W]."""
    for c in range(3):
        np.copyto(out[..., c], planes[c])
    np.copyto(out, np.float32(0.0), where=invalid[..., None])


def pixel_validity(depth: np.ndarray, mask_invalid: bool) -> np.ndarray:
    """Which pixels count: depth > 0 (masked), or every pixel (released: depth 0 lands on the camera centre)."""
    return depth > 0 if mask_invalid else np.ones(depth.shape, dtype=bool)


def world_coordinates(
    depth_m: np.ndarray, depth_intrinsic: np.ndarray, cam2world: np.ndarray, axis_align: np.ndarray,
    mask_invalid: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Aligned world coordinates of every pixel.

    Args:
        depth_m: [V, H, W] (or [H, W]) depth in metres, 0 = invalid.
        depth_intrinsic: [4, 4] (or [3, 3]) pinhole intrinsics of the depth camera.
        cam2world: [V, 4, 4] (or [4, 4]) camera-to-world poses, raw scan frame, OpenCV axes.
        axis_align: [4, 4] raw -> aligned transform.
        mask_invalid: False reproduces the released code: depth 0 is back-projected like any depth (onto
            the camera centre) and every pixel is valid.

    Returns:
        xyz: [V, H, W, 3] float32 aligned metres (0 where invalid), valid: [V, H, W] bool (depth > 0).
    """
    depth, poses, single = _as_frames(depth_m, cam2world)
    valid = pixel_validity(depth, mask_invalid)
    xyz = np.empty(depth.shape + (3,), dtype=np.float32)
    for i, planes in _world_planes(depth, depth_intrinsic, poses, axis_align):
        _store(planes, ~valid[i], xyz[i])
    return (xyz[0], valid[0]) if single else (xyz, valid)


def world_coordinates_and_voxels(
    depth_m: np.ndarray, depth_intrinsic: np.ndarray, cam2world: np.ndarray, axis_align: np.ndarray,
    voxel_size: float = 0.1, mask_invalid: bool = True,
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """world_coordinates plus each frame's voxel set, computed from the same planes while they are hot.

    Returns xyz [V, H, W, 3] float32, valid [V, H, W] bool and V voxel sets [M_f, 3] int64.
    """
    depth, poses, _ = _as_frames(depth_m, cam2world)
    valid = pixel_validity(depth, mask_invalid)
    xyz = np.empty(depth.shape + (3,), dtype=np.float32)
    voxels = []
    for i, planes in _world_planes(depth, depth_intrinsic, poses, axis_align):
        _store(planes, ~valid[i], xyz[i])
        voxels.append(_plane_voxels(planes, valid[i], voxel_size))
    return xyz, valid, voxels


@dataclass(frozen=True)
class VoxelGrid:
    """A bounded integer grid: voxel (i, j, k) <-> linear index ((i - o0) * s1 + (j - o1)) * s2 + (k - o2)."""

    origin: tuple[int, int, int]
    shape: tuple[int, int, int]

    @classmethod
    def around(cls, voxels: np.ndarray) -> VoxelGrid:
        """Smallest grid holding the integer voxels [M, 3] (M >= 1)."""
        low, high = voxels.min(axis=0), voxels.max(axis=0)
        return cls(tuple(int(v) for v in low), tuple(int(v) for v in high - low + 1))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def contains(self, voxels: np.ndarray) -> np.ndarray:
        """[M, 3] int -> [M] bool inside the grid."""
        rel = voxels - np.asarray(self.origin)
        return ((rel >= 0) & (rel < np.asarray(self.shape))).all(axis=1)

    def encode(self, voxels: np.ndarray) -> np.ndarray:
        """[M, 3] int voxels inside the grid -> [M] int64 linear indices (lexicographic order preserved)."""
        rel = np.asarray(voxels, dtype=np.int64) - np.asarray(self.origin, dtype=np.int64)
        return (rel[:, 0] * self.shape[1] + rel[:, 1]) * self.shape[2] + rel[:, 2]

    def decode(self, index: np.ndarray) -> np.ndarray:
        """[M] linear indices -> [M, 3] int64 voxels."""
        rel = np.stack(np.unravel_index(np.asarray(index, dtype=np.int64), self.shape), axis=1)
        return rel + np.asarray(self.origin, dtype=np.int64)


def voxelize(xyz: np.ndarray, voxel_size: float = 0.1) -> np.ndarray:
    """[N, 3] metres -> [N, 3] int64 voxel indices round(xyz / voxel_size) (half to even, like np.round)."""
    scaled = np.multiply(xyz, np.float32(1.0 / voxel_size), dtype=np.float32)
    return np.rint(scaled, out=scaled).astype(np.int64)


def unique_voxels(voxels: np.ndarray) -> np.ndarray:
    """Unique rows of [N, 3] integer voxels, lexicographically sorted: [M, 3] int64.

    Marks an occupancy array over the bounding grid (O(N + cells)); very sparse huge grids fall back to np.unique.
    """
    voxels = np.asarray(voxels, dtype=np.int64).reshape(-1, 3)
    if len(voxels) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    grid = VoxelGrid.around(voxels)
    if grid.size > MAX_SCATTER_CELLS:
        return np.unique(voxels, axis=0)
    occupied = np.zeros(grid.size, dtype=bool)
    occupied[grid.encode(voxels)] = True
    return grid.decode(np.flatnonzero(occupied))


def voxel_set(xyz: np.ndarray, voxel_size: float = 0.1) -> np.ndarray:
    """Unique voxels of a point set: [N, 3] metres -> [M, 3] int64 unique round(xyz / voxel_size), sorted."""
    return unique_voxels(voxelize(np.asarray(xyz).reshape(-1, 3), voxel_size))


def _plane_voxels(planes: np.ndarray, valid: np.ndarray, voxel_size: float) -> np.ndarray:
    """Voxel set of one frame from coordinate planes [3, H, W] (any strides) and valid [H, W]: [M, 3] int64.

    Rounds each plane, takes the bounding grid of the rounded planes (invalid pixels included: they only
    enlarge it), and builds linear cell keys in float32, exact while the grid has < 2**24 cells; then one
    gather of the valid keys and an occupancy scatter. Larger grids take the int64 path of voxel_set.
    """
    scale = np.float32(1.0 / voxel_size)
    rounded = [np.rint(np.multiply(plane, scale, dtype=np.float32)) for plane in planes]  # 3 x [H, W]
    low = [float(r.min()) for r in rounded]
    extent = [int(r.max() - lo) + 1 for r, lo in zip(rounded, low, strict=True)]
    cells = extent[0] * extent[1] * extent[2]
    if cells >= 1 << 24:
        return voxel_set(np.stack([p[valid] for p in planes], axis=1), voxel_size)
    key = rounded[0]
    key -= np.float32(low[0])
    key *= np.float32(extent[1] * extent[2])
    for r, lo, stride in ((rounded[1], low[1], extent[2]), (rounded[2], low[2], 1)):
        r -= np.float32(lo)
        if stride != 1:
            r *= np.float32(stride)
        key += r
    occupied = np.zeros(cells, dtype=bool)
    occupied[key[valid].astype(np.int32)] = True
    grid = VoxelGrid((int(low[0]), int(low[1]), int(low[2])), (extent[0], extent[1], extent[2]))
    return grid.decode(np.flatnonzero(occupied))


def frame_voxel_sets(xyz: np.ndarray, valid: np.ndarray, voxel_size: float = 0.1) -> list[np.ndarray]:
    """Voxel set of each frame's valid pixels: xyz [V, H, W, 3], valid [V, H, W] -> V arrays [M_f, 3] int64."""
    return [_plane_voxels(np.moveaxis(frame, -1, 0), mask, voxel_size) for frame, mask in zip(xyz, valid, strict=True)]
