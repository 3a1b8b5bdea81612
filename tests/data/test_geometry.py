"""World coordinates and voxel sets (SPEC.md section 1), on hand cases and on synthetic scenes from disk."""

from __future__ import annotations

import numpy as np

from tests.data.helpers import distance_to_surfaces
from vega3d.data import geometry
from vega3d.data.frames import load_scene_frames, scene_frame_ids
from vega3d.data.layout import DataLayout
from vega3d.testing.synthetic import load_truth


def _rotation_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def test_world_coordinates_hand_case():
    # fx = 2, fy = 4, cx = 0.5, cy = 0.5; pixel (u=1, v=0) at depth 2 -> camera (0.5, -0.25, 2).
    k = np.array([[2.0, 0, 0.5, 0], [0, 4.0, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    depth = np.array([[0.0, 2.0], [1.0, 0.0]], dtype=np.float32)  # [H=2, W=2]
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    align = np.eye(4)
    align[:3, :3] = _rotation_z(np.pi / 2)  # (x, y) -> (-y, x)
    xyz, valid = geometry.world_coordinates(depth, k, pose, align)
    assert xyz.shape == (2, 2, 3) and xyz.dtype == np.float32
    np.testing.assert_array_equal(valid, [[False, True], [True, False]])
    # pixel (u=1, v=0): camera (0.5, -0.25, 2) -> raw (1.5, 1.75, 5) -> aligned (-1.75, 1.5, 5)
    np.testing.assert_allclose(xyz[0, 1], [-1.75, 1.5, 5.0], atol=1e-6)
    # pixel (u=0, v=1): camera (-0.25, 0.125, 1) -> raw (0.75, 2.125, 4) -> aligned (-2.125, 0.75, 4)
    np.testing.assert_allclose(xyz[1, 0], [-2.125, 0.75, 4.0], atol=1e-6)
    np.testing.assert_array_equal(xyz[0, 0], 0.0)  # invalid depth stays 0, not the camera centre


def test_released_unmasked_depth_lands_on_the_camera_centre():
    """mask_invalid=False (the paper preset): depth 0 is back-projected like any depth, onto the camera centre
    (raw (1, 2, 3) -> aligned (-2, 1, 3)), every pixel is valid, and its voxel joins the frame's voxel set."""
    k = np.array([[2.0, 0, 0.5, 0], [0, 4.0, 0.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    depth = np.array([[0.0, 2.0], [1.0, 0.0]], dtype=np.float32)
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]
    align = np.eye(4)
    align[:3, :3] = _rotation_z(np.pi / 2)
    xyz, valid = geometry.world_coordinates(depth, k, pose, align, mask_invalid=False)
    assert valid.all()
    np.testing.assert_allclose(xyz[0, 0], [-2.0, 1.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(xyz[1, 1], [-2.0, 1.0, 3.0], atol=1e-6)
    np.testing.assert_allclose(xyz[0, 1], [-1.75, 1.5, 5.0], atol=1e-6)
    _, _, (masked,) = geometry.world_coordinates_and_voxels(depth[None], k, pose[None], align, 1.0)
    _, _, (released,) = geometry.world_coordinates_and_voxels(depth[None], k, pose[None], align, 1.0, mask_invalid=False)
    # 1 m voxels: (-1.75, 1.5, 5) -> (-2, 2, 5); (-2.125, 0.75, 4) -> (-2, 1, 4); camera centre -> (-2, 1, 3)
    assert sorted(map(tuple, masked)) == [(-2, 1, 4), (-2, 2, 5)]
    assert sorted(map(tuple, released)) == [(-2, 1, 3), (-2, 1, 4), (-2, 2, 5)]


def test_world_coordinates_equals_matrix_form():
    rng = np.random.default_rng(0)
    k = np.array([[50.0, 0, 15.5, 0], [0, 52.0, 11.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    depth = rng.uniform(0.5, 4.0, size=(3, 24, 32)).astype(np.float32)
    depth[:, ::5, ::7] = 0
    poses = np.tile(np.eye(4), (3, 1, 1))
    for i in range(3):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        poses[i, :3, :3] = q * np.sign(np.linalg.det(q))
        poses[i, :3, 3] = rng.normal(size=3)
    align = np.eye(4)
    align[:3, :3] = _rotation_z(0.7)
    align[:3, 3] = [2.0, -1.0, 0.1]
    xyz, valid = geometry.world_coordinates(depth, k, poses, align)
    v, u = np.meshgrid(np.arange(24), np.arange(32), indexing="ij")
    cam = np.stack([(u - 15.5) * depth / 50.0, (v - 11.5) * depth / 52.0, depth, np.ones_like(depth)], -1)
    expected = np.einsum("ij,vjk,vhwk->vhwi", align, poses, cam)[..., :3]
    np.testing.assert_allclose(xyz[valid], expected[valid], atol=1e-4)
    np.testing.assert_array_equal(valid, depth > 0)


def test_voxel_set_equals_sorting_unique():
    rng = np.random.default_rng(1)
    points = rng.uniform(-3, 3, size=(20000, 3)).astype(np.float32)
    expected = np.unique(np.round(points.astype(np.float64) / 0.1).astype(np.int64), axis=0)
    np.testing.assert_array_equal(geometry.voxel_set(points, 0.1), expected)
    # Far-apart points (huge bounding grid) take the sorting fallback and agree too.
    far = np.array([[0.0, 0, 0], [1e5, 0, 0], [0, 1e5, 1e5], [0.04, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(geometry.voxel_set(far, 0.1), [[0, 0, 0], [0, 1000000, 1000000], [1000000, 0, 0]])


def test_frame_voxel_sets_equal_unique_of_valid_points(small_synthetic_root):
    layout = DataLayout(small_synthetic_root)
    scene = load_truth(small_synthetic_root)[1].scene
    frames = load_scene_frames(layout, scene, scene_frame_ids(layout, scene)[:6])
    xyz, valid = geometry.world_coordinates(frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align)
    fused_xyz, fused_valid, fused = geometry.world_coordinates_and_voxels(
        frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align, 0.1)
    np.testing.assert_array_equal(fused_xyz, xyz)
    np.testing.assert_array_equal(fused_valid, valid)
    separate = geometry.frame_voxel_sets(xyz, valid, 0.1)
    for i in range(len(xyz)):
        expected = np.unique(np.rint(xyz[i][valid[i]] * np.float32(10.0)).astype(np.int64), axis=0)
        assert len(expected) > 100
        np.testing.assert_array_equal(separate[i], expected)
        np.testing.assert_array_equal(fused[i], expected)


def test_frame_voxel_sets_of_a_huge_grid_take_the_exact_path():
    # 2**24 or more cells cannot be keyed exactly in float32; the int64 path must give the same sets.
    xyz = np.zeros((1, 2, 3, 3), dtype=np.float32)
    xyz[0, 0, 0] = [-900.0, -900.0, -900.0]
    xyz[0, 1, 2] = [900.0, 900.0, 900.0]
    xyz[0, 1, 1] = [0.26, 0.0, -0.04]
    valid = np.ones((1, 2, 3), dtype=bool)
    valid[0, 0, 1] = False
    (voxels,) = geometry.frame_voxel_sets(xyz, valid, 0.1)
    np.testing.assert_array_equal(voxels, [[-9000, -9000, -9000], [0, 0, 0], [3, 0, 0], [9000, 9000, 9000]])


def test_voxel_grid_encode_decode_round_trip():
    voxels = np.array([[-2, 5, 1], [3, -1, 0], [0, 0, 7]])
    grid = geometry.VoxelGrid.around(voxels)
    assert grid.origin == (-2, -1, 0) and grid.shape == (6, 7, 8)
    np.testing.assert_array_equal(grid.decode(grid.encode(voxels)), voxels)
    np.testing.assert_array_equal(grid.contains(np.array([[-3, 0, 0], [3, 5, 7]])), [False, True])


def test_backprojected_synthetic_depth_lies_on_true_surfaces(small_synthetic_root):
    layout = DataLayout(small_synthetic_root)
    for truth in load_truth(small_synthetic_root):
        frames = load_scene_frames(layout, truth.scene, scene_frame_ids(layout, truth.scene))
        xyz, valid = geometry.world_coordinates(frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align)
        points = xyz[valid]
        assert valid.mean() > 0.9 and (~valid).any()  # sensor dropout exists and is masked
        distance = distance_to_surfaces(points, truth)
        assert distance.max() < 0.01, f"{truth.scene}: {distance.max():.4f} m off the true surfaces"
        # Without the axis alignment the points are NOT on the surfaces: the raw frame differs.
        raw, _ = geometry.world_coordinates(frames.depth, frames.depth_intrinsic, frames.cam2world, np.eye(4))
        assert np.median(distance_to_surfaces(raw[valid][::50], truth)) > 0.05
