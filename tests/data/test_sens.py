"""ScanNet .sens: write -> read round trip, stride reading, export to posed_images read back by the loader."""

from __future__ import annotations

import numpy as np
import pytest

from vega3d.data import sens
from vega3d.data.errors import DataFileError
from vega3d.data.frames import load_scene_frames, scene_frame_ids
from vega3d.data.layout import DataLayout

COLOR_W, COLOR_H, DEPTH_W, DEPTH_H = 48, 36, 32, 24


def _header(num_frames: int, depth_shift: float = 1000.0) -> sens.SensHeader:
    k_color = np.diag([40.0, 40.0, 1.0, 1.0]).astype(np.float32)
    k_color[:2, 2] = [23.5, 17.5]
    k_depth = np.diag([30.0, 30.0, 1.0, 1.0]).astype(np.float32)
    k_depth[:2, 2] = [15.5, 11.5]
    return sens.SensHeader("StructureSensor", k_color, np.eye(4, dtype=np.float32), k_depth,
                           np.eye(4, dtype=np.float32), COLOR_W, COLOR_H, DEPTH_W, DEPTH_H, depth_shift,
                           num_frames=num_frames)


def _frames(num_frames: int) -> tuple[list[sens.SensFrame], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    frames, colors, depths, poses = [], [], [], []
    for i in range(num_frames):
        color = np.full((COLOR_H, COLOR_W, 3), (20 * i % 255, 100, 200 - 5 * i), dtype=np.uint8)
        depth = rng.integers(0, 5000, size=(DEPTH_H, DEPTH_W), dtype=np.uint16)
        pose = np.eye(4, dtype=np.float32)
        pose[:3, 3] = [0.1 * i, -0.2 * i, 1.5]
        frames.append(sens.encode_frame(color, depth, pose, timestamp=33_333 * i))
        colors.append(color)
        depths.append(depth)
        poses.append(pose)
    return frames, colors, depths, poses


def test_round_trip_header_and_frames(tmp_path):
    frames, colors, depths, poses = _frames(5)
    path = tmp_path / "scene.sens"
    sens.write_sens(path, _header(5), frames)
    with sens.SensReader(path) as reader:
        header = reader.header
        assert (header.sensor_name, header.num_frames, header.depth_shift) == ("StructureSensor", 5, 1000.0)
        assert (header.color_width, header.color_height, header.depth_width, header.depth_height) == (48, 36, 32, 24)
        np.testing.assert_array_equal(header.intrinsic_depth, _header(5).intrinsic_depth)
        read = list(reader.frames())
    assert [index for index, _ in read] == [0, 1, 2, 3, 4]
    for (_, frame), color, depth, pose, i in zip(read, colors, depths, poses, range(5), strict=True):
        np.testing.assert_array_equal(frame.camera_to_world, pose)
        assert frame.timestamp_color == frame.timestamp_depth == 33_333 * i
        np.testing.assert_array_equal(frame.depth(header), depth)  # zlib is lossless
        assert np.abs(frame.color().astype(int) - color).max() <= 6  # JPEG


def test_stride_skips_frames(tmp_path):
    frames, _, depths, _ = _frames(23)
    sens.write_sens(tmp_path / "s.sens", _header(23), frames)
    with sens.SensReader(tmp_path / "s.sens") as reader:
        read = list(reader.frames(stride=10))
        assert [i for i, _ in read] == [0, 10, 20]
        np.testing.assert_array_equal(read[2][1].depth(reader.header), depths[20])


def test_export_posed_images_every_tenth_frame(tmp_path):
    frames, _, depths, poses = _frames(25)
    frames[10].camera_to_world[:] = -np.inf  # lost tracking, as ScanNet marks it
    sens.write_sens(tmp_path / "s.sens", _header(25), frames)
    layout = DataLayout(tmp_path / "data")
    assert sens.export_posed_images(tmp_path / "s.sens", layout, "scene0042_00") == [0, 20]
    assert scene_frame_ids(layout, "scene0042_00") == [0, 20]
    assert layout.color_path("scene0042_00", 20).read_bytes() == frames[20].color_data  # stored JPEG, not re-encoded
    layout.scan_dir("scene0042_00").mkdir(parents=True)
    layout.scan_meta_path("scene0042_00").write_text("sceneType = Test\n")
    loaded = load_scene_frames(layout, "scene0042_00", [0, 20])
    np.testing.assert_allclose(loaded.depth[1], depths[20] / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(loaded.cam2world[1], poses[20], atol=1e-7)
    np.testing.assert_allclose(loaded.depth_intrinsic, _header(1).intrinsic_depth, atol=1e-6)
    assert loaded.rgb.shape == (2, DEPTH_H, DEPTH_W, 3)  # colour resized to the depth resolution


def test_export_converts_depth_shift_to_millimetres(tmp_path):
    frames, _, depths, _ = _frames(1)
    sens.write_sens(tmp_path / "s.sens", _header(1, depth_shift=4000.0), frames)
    layout = DataLayout(tmp_path / "data")
    sens.export_posed_images(tmp_path / "s.sens", layout, "scene0001_00")
    from vega3d.data.scannet import read_depth_mm

    np.testing.assert_array_equal(read_depth_mm(layout.depth_path("scene0001_00", 0)), np.rint(depths[0] / 4.0))


def test_truncated_and_wrong_version_files_name_the_file(tmp_path):
    frames, _, _, _ = _frames(3)
    path = tmp_path / "s.sens"
    sens.write_sens(path, _header(3), frames)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataFileError, match="truncated") as error, sens.SensReader(path) as reader:
        list(reader.frames())
    assert error.value.path == str(path)
    path.write_bytes(b"\x03\x00\x00\x00" + b"\x00" * 64)
    with pytest.raises(DataFileError, match="version 3"), sens.SensReader(path):
        pass
