"""Frame sampling: uniform indices, greedy max-coverage on a hand case and on synthetic scenes, mc-ratio95."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.helpers import aligned_mesh_vertices
from vega3d.config import SyntheticConfig
from vega3d.data import sampling
from vega3d.data.frames import scene_frame_ids
from vega3d.data.geometry import voxel_set
from vega3d.data.layout import DataLayout
from vega3d.testing.synthetic import load_truth, synthesize_scenes


def test_uniform_indices():
    assert sampling.uniform_indices(10, 4) == [0, 3, 6, 9]
    assert sampling.uniform_indices(3, 5) == [0, 0, 1, 1, 2]  # duplicates when T < budget
    assert sampling.uniform_indices(64, 32)[:3] == [0, 2, 4] and sampling.uniform_indices(64, 32)[-1] == 63


def test_candidate_indices():
    assert sampling.candidate_indices(64, 32) == list(range(0, 64, 2))
    assert sampling.candidate_indices(40, 32) == list(range(40))  # every 2nd would give 20 < 32


# Hand case: P = {a..f}; z is outside P and never counts.
A, B, C, D, E, F, Z = ([i, 0, 0] for i in range(7))
FRAMES = [np.array(v) for v in ([A, B], [A, B, C, D], [D, E], [F, Z], [E])]
SCENE = np.array([A, B, C, D, E, F])


def test_greedy_hand_case():
    # gains [2, 4, 2, 1, 1] -> frame 1 (+4); then [0, -, 1, 1, 1] -> frame 2 (tie, earliest, +1: e);
    # then [0, -, -, 1, 0] -> frame 3 (+1: f); then frames 0 and 4 add nothing.
    result = sampling.max_coverage(FRAMES, SCENE, budget=5)
    assert result.indices == [1, 2, 3, 0, 4] and result.gains == [4, 1, 1, 0, 0] and result.num_all_voxels == 6
    assert sampling.max_coverage(FRAMES, SCENE, budget=2).indices == [1, 2]


def test_ratio_stops_at_the_threshold():
    # cumulative gains 4, 5, 6 of 6 voxels: 95% (5.7) is reached by the 3rd pick, 80% (4.8) by the 2nd.
    assert sampling.max_coverage(FRAMES, SCENE, budget=5, ratio=0.95).indices == [1, 2, 3]
    assert sampling.max_coverage(FRAMES, SCENE, budget=5, ratio=0.8).indices == [1, 2]
    assert sampling.max_coverage(FRAMES, SCENE, budget=5, ratio=0.6).indices == [1]


def test_sample_frame_ids_from_a_selection(tmp_path):
    layout = DataLayout(tmp_path)
    entry = {"video_id": "scannet/scene0001_00",
             "frame_files": [f"scannet/posed_images/scene0001_00/{f:05d}.jpg" for f in (50, 0, 30, 10, 20)],
             "voxel_nums": [60, 20, 15, 4, 1], "num_all_voxels": 100, "num_select_voxels": 100}
    selections = {entry["video_id"]: entry}
    assert sampling.sample_frame_ids(layout, "scene0001_00", "max-coverage", 3, selections) == [0, 30, 50]
    assert sampling.sample_frame_ids(layout, "scene0001_00", "max-coverage", 10, selections) == [0, 10, 20, 30, 50]
    # cumulative 60, 80, 95: 95% is reached by the 3rd pick.
    assert sampling.sample_frame_ids(layout, "scene0001_00", "mc-ratio95", 32, selections) == [0, 30, 50]
    # the budget caps mc-ratio95 too
    assert sampling.sample_frame_ids(layout, "scene0001_00", "mc-ratio95", 2, selections) == [0, 50]
    with pytest.raises(ValueError, match="unknown frame sampling"):
        sampling.sample_frame_ids(layout, "scene0001_00", "random", 3, selections)
    with pytest.raises(KeyError, match="scene0002_00"):
        sampling.sample_frame_ids(layout, "scene0002_00", "max-coverage", 3, selections)


@pytest.fixture(scope="module")
def coverage_root(tmp_path_factory):
    """7 scenes with 48 frames (24 candidates) at 80x60: enough frames for the greedy choice to matter."""
    root = tmp_path_factory.mktemp("coverage") / "data"
    synthesize_scenes(root, SyntheticConfig(num_train=3, num_val=2, num_test=2, frames=48, width=80, height=60, seed=11))
    return root


def _covered(frame_voxels, scene_voxels, picks):
    union = {tuple(v) for i in picks for v in frame_voxels[i]}
    return len(union & {tuple(v) for v in scene_voxels})


def test_max_coverage_covers_at_least_uniform_on_every_scene(coverage_root):
    # Budgets below the 24 candidates (every 2nd frame); at budget == candidates the greedy can only return
    # every 2nd frame, which is no choice at all.
    layout = DataLayout(coverage_root)
    truths = load_truth(coverage_root)
    assert len(truths) == 7
    for truth in truths:
        frame_ids = scene_frame_ids(layout, truth.scene)
        scene_voxels = voxel_set(aligned_mesh_vertices(layout, truth.scene), 0.1)
        voxels = sampling.scene_frame_voxels(layout, truth.scene, frame_ids)
        for budget in (4, 8, 16):
            uniform = _covered(voxels, scene_voxels, sampling.uniform_indices(len(frame_ids), budget))
            candidates = sampling.candidate_indices(len(frame_ids), budget)
            result = sampling.max_coverage([voxels[i] for i in candidates], scene_voxels, budget)
            greedy = _covered(voxels, scene_voxels, [candidates[i] for i in result.indices])
            assert sum(result.gains) == greedy  # gains add up to the covered set
            assert greedy >= uniform, f"{truth.scene} budget {budget}: max-coverage {greedy} < uniform {uniform}"
            assert result.gains == sorted(result.gains, reverse=True)  # greedy gains never grow


def test_coverage_selection_entry_and_sampling(small_synthetic_root):
    layout = DataLayout(small_synthetic_root)
    scene = "scene0002_00"
    scene_voxels = voxel_set(aligned_mesh_vertices(layout, scene), 0.1)
    entry = sampling.coverage_selection(layout, scene, scene_voxels, budget=6)
    assert entry["video_id"] == "scannet/" + scene and len(entry["frame_files"]) == 6
    frame_ids = [sampling.frame_id_of(f) for f in entry["frame_files"]]
    assert set(frame_ids) <= set(range(0, 160, 20))  # candidates: every 2nd frame of the list
    assert entry["num_select_voxels"] == sum(entry["voxel_nums"]) <= entry["num_all_voxels"]
    selections = {entry["video_id"]: entry}
    assert sampling.sample_frame_ids(layout, scene, "max-coverage", 4, selections) == sorted(frame_ids[:4])
    ratio = sampling.sample_frame_ids(layout, scene, "mc-ratio95", 6, selections)
    cumulative = np.cumsum(entry["voxel_nums"])
    cut = int(np.flatnonzero(cumulative >= 0.95 * entry["num_all_voxels"])[0]) + 1 if cumulative[-1] >= 0.95 * entry[
        "num_all_voxels"] else 6
    assert ratio == sorted(frame_ids[:cut])
    assert sampling.sample_frame_ids(layout, scene, "uniform", 4) == [0, 50, 100, 150]
