"""Frames + world maps -> pixel_values / world_coords / coord_valid with one resize."""

import numpy as np
import pytest
import torch

from tests.model.helpers import tiny_model_config
from vega3d.model.preprocess import preprocess_frames, preprocess_rgb, preprocess_world


def test_rgb_normalised_with_half_mean_and_std():
    rgb = np.zeros((2, 48, 64, 3), dtype=np.uint8)
    rgb[1] = 255
    pix = preprocess_rgb(rgb, 28)
    assert pix.shape == (2, 3, 28, 28)
    assert torch.allclose(pix[0], torch.full((3, 28, 28), -1.0)) and torch.allclose(pix[1], torch.ones(3, 28, 28))


def test_world_resize_keeps_invalid_pixels_invalid_and_values_real():
    world = np.zeros((1, 4, 4, 3), dtype=np.float32)
    world[0, :, :, 0] = np.arange(16, dtype=np.float32).reshape(4, 4)
    valid = np.ones((1, 4, 4), dtype=bool)
    valid[0, :2, :2] = False  # top-left quarter invalid
    coords, ok = preprocess_world(world, valid, 8)
    assert coords.shape == (1, 8, 8, 3) and ok.shape == (1, 8, 8)
    assert not ok[0, :4, :4].any() and ok[0, 4:, :].all() and ok[0, :, 4:].all()
    assert (coords[0, :4, :4] == 0).all()
    # nearest: every output value is one of the input values (no blending across pixels)
    assert set(coords[0, ..., 0][ok[0]].tolist()) <= set(range(16))
    assert coords[0, 7, 7, 0].item() == 15.0


def test_preprocess_frames_shapes_follow_the_config():
    cfg = tiny_model_config()
    size = cfg.vision.image_size
    out = preprocess_frames(np.zeros((3, 24, 32, 3), np.uint8), np.zeros((3, 24, 32, 3), np.float32),
                            np.ones((3, 24, 32), bool), cfg)
    assert out["pixel_values"].shape == (3, 3, size, size)
    assert out["world_coords"].shape == (3, size, size, 3) and out["world_coords"].dtype == torch.float32
    assert out["coord_valid"].dtype == torch.bool and out["coord_valid"].all()


def test_bad_shapes_fail_clearly():
    with pytest.raises(ValueError, match=r"\[V, H, W, 3\] uint8"):
        preprocess_rgb(np.zeros((4, 4, 3), np.uint8), 8)
    with pytest.raises(ValueError, match="valid"):
        preprocess_world(np.zeros((1, 4, 4, 3), np.float32), np.ones((1, 4, 5), bool), 8)


def test_preprocess_scene_back_projects_depth_with_the_same_resize():
    from vega3d.data.frames import SceneFrames
    from vega3d.model.preprocess import preprocess_scene

    cfg = tiny_model_config()
    size = cfg.vision.image_size
    depth = np.full((1, 8, 8), 2.0, dtype=np.float32)
    depth[0, :, :4] = 0.0  # left half invalid
    intrinsic = np.array([[4.0, 0, 4.0, 0], [0, 4.0, 4.0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    shift = np.eye(4)
    shift[:3, 3] = [10.0, 0.0, 0.0]  # aligned = raw + 10 m along x
    frames = SceneFrames("scene0000_00", [0], np.zeros((1, 8, 8, 3), np.uint8), depth,
                         np.eye(4)[None], intrinsic, shift)
    out = preprocess_scene(frames, cfg)
    valid = out["coord_valid"][0]
    assert not valid[:, : size // 2].any() and valid[:, size // 2 :].all()
    coords = out["world_coords"][0]
    # depth 2 m along the optical axis (camera z) -> aligned z = 2, x = 10 + (u - 4) * 2 / 4
    assert torch.allclose(coords[valid][:, 2], torch.tensor(2.0))
    assert coords[0, -1, 0].item() == pytest.approx(10.0 + (7 - 4) * 2.0 / 4.0)
