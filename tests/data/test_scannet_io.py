"""Round trips of every raw ScanNet file, EmbodiedScan infos, and one clear error per bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.sparse as sp

from vega3d.data import embodiedscan, scannet
from vega3d.data.errors import DataFileError, MissingDataFileError
from vega3d.data.frames import load_scene_frames, scene_frame_ids
from vega3d.data.layout import DataLayout


def test_color_depth_pose_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = np.zeros((30, 40, 3), dtype=np.uint8)
    rgb[:, :20] = (200, 40, 40)
    rgb[:, 20:] = (40, 70, 200)
    scannet.write_color(tmp_path / "a.jpg", rgb)
    decoded = scannet.read_color(tmp_path / "a.jpg")
    assert decoded.shape == (30, 40, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded[5:25, 2:17].astype(int) - (200, 40, 40)).max() <= 8  # JPEG is lossy, colour kept

    depth = rng.integers(0, 65535, size=(30, 40), dtype=np.uint16)
    scannet.write_depth_mm(tmp_path / "a.png", depth)
    np.testing.assert_array_equal(scannet.read_depth_mm(tmp_path / "a.png"), depth)
    np.testing.assert_allclose(scannet.read_depth(tmp_path / "a.png"), depth.astype(np.float32) / 1000, rtol=1e-6)

    pose = np.eye(4)
    pose[:3, :3] = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    pose[:3, 3] = [1.25, -3.5, 0.125]
    scannet.write_matrix(tmp_path / "a.txt", pose)
    np.testing.assert_allclose(scannet.read_pose(tmp_path / "a.txt"), pose, atol=1e-8)


def test_axis_alignment_file(tmp_path):
    align = np.arange(16, dtype=np.float64).reshape(4, 4) / 7.0
    scannet.write_scan_meta(tmp_path / "s.txt", align, {"colorWidth": "640"})
    text = (tmp_path / "s.txt").read_text()
    assert text.startswith("axisAlignment = ") and "colorWidth = 640" in text
    np.testing.assert_allclose(scannet.read_axis_alignment(tmp_path / "s.txt"), align, rtol=1e-8)
    (tmp_path / "test.txt").write_text("colorWidth = 640\n")  # ScanNet test scans carry no alignment
    np.testing.assert_array_equal(scannet.read_axis_alignment(tmp_path / "test.txt"), np.eye(4))


def test_mesh_segments_aggregation_masks_round_trip(tmp_path):
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [2, 2, 2]], dtype=np.float32)
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9], [1, 2, 3]], dtype=np.uint8)
    faces = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32)
    scannet.write_mesh(tmp_path / "m.ply", scannet.Mesh(vertices, colors, faces))
    mesh = scannet.read_mesh(tmp_path / "m.ply")
    np.testing.assert_array_equal(mesh.vertices, vertices)
    np.testing.assert_array_equal(mesh.colors, colors)
    np.testing.assert_array_equal(mesh.faces, faces)

    segments = np.array([4, 4, 7, 9, 9])
    scannet.write_segments(tmp_path / "s.json", "scene0000_00", segments)
    np.testing.assert_array_equal(scannet.read_segments(tmp_path / "s.json"), segments)
    aggregation = scannet.Aggregation(object_ids=[1, 0], labels=["table", "chair"], segments=[[9], [4]])
    scannet.write_aggregation(tmp_path / "a.json", "scene0000_00", aggregation)
    read = scannet.read_aggregation(tmp_path / "a.json")
    assert read.object_ids == [0, 1] and read.labels == ["chair", "table"] and read.segments == [[4], [9]]
    np.testing.assert_array_equal(scannet.vertex_instance_ids(segments, read), [0, 0, -1, 1, 1])

    masks = sp.csr_matrix(np.array([[1, 0, 0, 1, 0], [0, 1, 1, 0, 0]], dtype=bool))
    scannet.write_masks(tmp_path / "x.mask.npz", masks)
    np.testing.assert_array_equal(scannet.read_masks(tmp_path / "x.mask.npz").toarray(), masks.toarray())


def test_embodiedscan_infos_round_trip(tmp_path):
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[1, :3, 3] = [1, 2, 3]
    entry = embodiedscan.scene_info("scene0003_00", [0, 10], poses, 2 * np.eye(4), 3 * np.eye(4), 4 * np.eye(4))
    embodiedscan.write_infos(tmp_path / "i.pkl", [entry])
    infos = embodiedscan.read_infos(tmp_path / "i.pkl")
    scene = embodiedscan.infos_by_scene(infos)["scene0003_00"]
    assert scene["sample_idx"] == "scannet/scene0003_00"
    assert [im["img_path"] for im in scene["images"]] == [
        "scannet/posed_images/scene0003_00/00000.jpg", "scannet/posed_images/scene0003_00/00010.jpg"]
    assert scene["images"][1]["depth_path"] == "scannet/posed_images/scene0003_00/00010.png"
    np.testing.assert_array_equal(scene["images"][1]["cam2global"], poses[1])
    np.testing.assert_array_equal(scene["axis_align_matrix"], 2 * np.eye(4))
    np.testing.assert_array_equal(scene["depth_cam2img"], 3 * np.eye(4))


@pytest.fixture
def broken_root(small_synthetic_root, tmp_path):
    """A private copy of one scene of the small root, to damage."""
    layout = DataLayout(tmp_path / "data")
    scene = "scene0000_00"
    source = DataLayout(small_synthetic_root)
    shutil.copytree(source.posed_images_dir(scene), layout.posed_images_dir(scene))
    shutil.copytree(source.scan_dir(scene), layout.scan_dir(scene))
    return layout, scene


def test_missing_frame_names_the_file(broken_root):
    layout, scene = broken_root
    layout.pose_path(scene, 30).unlink()
    with pytest.raises(MissingDataFileError) as error:
        load_scene_frames(layout, scene, [0, 30])
    assert error.value.path == str(layout.pose_path(scene, 30))
    assert str(layout.pose_path(scene, 30)) in str(error.value) and "not found" in str(error.value)


def test_unreadable_png_names_the_file(broken_root):
    layout, scene = broken_root
    layout.depth_path(scene, 20).write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(DataFileError) as error:
        load_scene_frames(layout, scene, scene_frame_ids(layout, scene))
    assert error.value.path == str(layout.depth_path(scene, 20)) and "PNG" in error.value.problem


def test_eight_bit_depth_is_refused(broken_root):
    from PIL import Image

    layout, scene = broken_root
    Image.fromarray(np.zeros((120, 160), dtype=np.uint8)).save(layout.depth_path(scene, 10))
    with pytest.raises(DataFileError, match="16-bit") as error:
        load_scene_frames(layout, scene, [10])
    assert error.value.path == str(layout.depth_path(scene, 10))


def test_pose_with_nan_names_the_file(broken_root):
    layout, scene = broken_root
    pose = scannet.read_pose(layout.pose_path(scene, 40))
    pose[1, 3] = np.nan
    scannet.write_matrix(layout.pose_path(scene, 40), pose)
    with pytest.raises(DataFileError) as error:
        load_scene_frames(layout, scene, [0, 40])
    assert error.value.path == str(layout.pose_path(scene, 40)) and "NaN" in str(error.value)


def test_pose_with_wrong_shape_names_the_file(broken_root):
    layout, scene = broken_root
    layout.pose_path(scene, 0).write_text("1 0 0\n0 1 0\n0 0 1\n")
    with pytest.raises(DataFileError, match="expected 16 numbers") as error:
        load_scene_frames(layout, scene, [0])
    assert error.value.path == str(layout.pose_path(scene, 0))


def test_missing_scene_folder(tmp_path):
    with pytest.raises(DataFileError, match="scene folder not found"):
        scene_frame_ids(DataLayout(tmp_path), "scene0099_00")
