"""Feature pictures: PCA map colours, correspondence peaks, the consistency score by hand, the pictures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vega3d.data.geometry import world_coordinates
from vega3d.viewer.features import (
    cell_matches,
    cell_world_coordinates,
    consistency_score,
    correspondence,
    feature_pictures,
    pca_rgb,
)


def test_pca_of_a_grid_with_two_directions_has_exactly_two_colours():
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(2, 16))
    labels = rng.integers(0, 2, size=(3, 6, 6))  # 3 frames of 6x6 cells, each cell one of the two directions
    labels[0, 0, 0], labels[0, 0, 1] = 0, 1
    features = directions[labels].transpose(0, 3, 1, 2)  # [3, 16, 6, 6]
    colours = pca_rgb(features)
    assert colours.shape == (3, 6, 6, 3) and colours.dtype == np.uint8
    distinct = {tuple(c) for c in colours.reshape(-1, 3)}
    assert len(distinct) == 2
    # the cells of one direction share one colour
    assert {tuple(c) for c in colours[labels == 0]} != {tuple(c) for c in colours[labels == 1]}
    assert len({tuple(c) for c in colours[labels == 0]}) == 1


def test_pca_of_three_directions_gives_three_colours_and_random_features_many():
    rng = np.random.default_rng(1)
    directions = rng.normal(size=(3, 8))
    labels = np.arange(3 * 4 * 4).reshape(3, 4, 4) % 3
    assert len({tuple(c) for c in pca_rgb(directions[labels].transpose(0, 3, 1, 2)).reshape(-1, 3)}) == 3
    assert len({tuple(c) for c in pca_rgb(rng.normal(size=(2, 8, 4, 4))).reshape(-1, 3)}) == 32


def test_correspondence_of_a_transposed_view_peaks_at_the_transposed_cell():
    rng = np.random.default_rng(2)
    frame0 = rng.normal(size=(32, 5, 5))
    frame1 = frame0.transpose(0, 2, 1)  # cell (i, j) of frame 0 == cell (j, i) of frame 1
    features = np.stack([frame0, frame1])
    for i, j in [(0, 3), (1, 4), (2, 2), (4, 0)]:
        heat = correspondence(features, 0, (i, j))
        assert heat.shape == (2, 5, 5)
        assert np.unravel_index(np.argmax(heat[1]), (5, 5)) == (j, i)
        assert heat[1, j, i] == pytest.approx(1.0) and heat[0, i, j] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside"):
        correspondence(features, 2, (0, 0))


def test_consistency_score_equals_the_hand_computation_on_two_frames():
    # 2 frames of 2x2 cells (numbered row * 2 + col), 2 channels
    f0 = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]]
    f1 = [[0.0, 2.0], [5.0, 5.0], [1.0, -1.0], [3.0, 0.0]]
    features = np.array([f0, f1]).transpose(0, 2, 1).reshape(2, 2, 2, 2)
    # frame 0 cell 0 is frame 1 cell 3; frame 1 cell 1 is frame 0 cell 2
    result = consistency_score(features, [[0, 0, 1, 3], [1, 1, 0, 2]])
    s2 = np.sqrt(0.5)
    # cos(f0[0]=[1,0], f1 cells) = [0, s2, s2, 1]: match 1, others 0, s2, s2
    # cos(f1[1]~[s2,s2], f0 cells) = [s2, s2, 1, -s2]: match 1, others s2, s2, -s2
    others = [0.0, s2, s2, s2, s2, -s2]
    assert result.matched_pairs == 2 and result.other_pairs == 6
    assert result.matched_similarity == pytest.approx(1.0)
    assert result.other_similarity == pytest.approx(sum(others) / 6) == pytest.approx(s2 / 2)
    assert result.score == pytest.approx(1.0 - s2 / 2)


def test_consistency_needs_a_match():
    with pytest.raises(ValueError, match="seen by two frames"):
        consistency_score(np.ones((2, 3, 2, 2)), np.zeros((0, 4)))


def test_cells_of_a_shifted_camera_match_the_shifted_cells():
    # a wall at z = 2 m seen by two cameras looking down +z; camera 1 moved 1 m along +x: a wall point seen at
    # image column c by camera 0 is at column c - fx * 1 / 2 in camera 1
    height, width, g = 40, 80, 4
    intrinsic = np.array([[40.0, 0, 40, 0], [0, 40.0, 20, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    poses = np.stack([np.eye(4), np.eye(4)])
    poses[1, 0, 3] = 1.0
    depth = np.full((2, height, width), 2.0, dtype=np.float32)
    world, valid = world_coordinates(depth, intrinsic, poses, np.eye(4))
    coords, cell_valid = cell_world_coordinates(world, valid, g)
    matches = cell_matches(coords, cell_valid, depth, intrinsic, poses, np.eye(4))
    from_0 = {int(a): int(m) for u, a, w, m in matches if u == 0}
    # cells are 20 px wide: a shift of 20 px = one cell to the left; column 0 leaves the view
    assert from_0 == {r * g + c: r * g + c - 1 for r in range(g) for c in range(1, g)}
    occluded = depth.copy()
    occluded[1] = 0.5  # something right in front of camera 1: nothing of the wall is seen there
    assert not (cell_matches(coords, cell_valid, occluded, intrinsic, poses, np.eye(4))[:, 2] == 1).any()


def test_cell_coordinates_average_valid_pixels_only():
    world = np.zeros((1, 4, 4, 3), dtype=np.float32)
    world[0, :2, :2] = [[[1, 1, 1], [3, 3, 3]], [[0, 0, 0], [0, 0, 0]]]
    valid = np.zeros((1, 4, 4), dtype=bool)
    valid[0, 0, :2] = True  # two valid pixels in cell (0, 0), none elsewhere
    coords, cell_valid = cell_world_coordinates(world, valid, 2)
    assert cell_valid.tolist() == [[[True, False], [False, False]]]
    assert coords[0, 0, 0] == pytest.approx([2.0, 2.0, 2.0])


def test_pictures_of_a_synthetic_scene(viewer_root):
    from vega3d.data.frames import load_scene_frames, scene_frame_ids
    from vega3d.data.layout import DataLayout

    layout = DataLayout(viewer_root)
    scene = sorted(p.name for p in (viewer_root / "scannet" / "posed_images").iterdir())[0]
    frames = load_scene_frames(layout, scene, scene_frame_ids(layout, scene)[:3])
    features = np.random.default_rng(3).normal(size=(3, 8, 4, 4))
    pictures = feature_pictures(frames, features, "toy")
    assert pictures.consistency.matched_pairs > 0
    assert abs(pictures.consistency.score) < 1.0  # random features carry no geometry
    for png in (pictures.pca_png, pictures.correspondence_png):
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG" and image.width > 200
    assert pictures.summary()["query"] == [0, 2, 2]
