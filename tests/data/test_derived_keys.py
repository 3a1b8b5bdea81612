"""Derived data is keyed by the settings that made it; a rerun with the same settings reuses it (issue 16)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.data.prepared import copy_root
from vega3d.config import load_config
from vega3d.data.layout import DataLayout
from vega3d.data.prep import run_prep
from vega3d.data.sampling import load_selections, sample_frame_ids


def _prep(root: Path, *overrides: str):
    return run_prep(root, load_config("tiny", list(overrides)).data, progress=False)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_settings_on_one_root_never_overwrite_each_other(raw_root, tmp_path):
    root = copy_root(raw_root, tmp_path / "data")
    layout = DataLayout(root)
    _prep(root)  # the paper's settings: 0.1 m voxels, 32 picks
    paper = layout.select_frames_path()
    assert paper.name == "scannet_select_frames.json" and layout.voxel_path().name == "pcd_discrete_0.1.pkl"
    before = _digest(paper), _digest(layout.voxel_path())
    _prep(root, "data.voxel_size=0.2", "data.frames_upbound=40")
    other = layout.select_frames_path(0.2, 40)
    assert other.name == "scannet_select_frames_voxel0.2_frames40.json" and other.is_file()
    assert layout.voxel_path(0.2).is_file()
    assert (_digest(paper), _digest(layout.voxel_path())) == before  # the first run's files are untouched
    coarse, fine = load_selections(layout, 0.2, 40), load_selections(layout)
    assert set(coarse) == set(fine)
    scene = sorted(coarse)[0]
    assert coarse[scene]["num_all_voxels"] < fine[scene]["num_all_voxels"]  # 0.2 m voxels: fewer of them
    name = scene.split("/")[1]
    assert sample_frame_ids(layout, name, "max-coverage", 8, coarse) != [] and \
        sample_frame_ids(layout, name, "max-coverage", 8, fine) != []


def test_a_rerun_with_the_same_settings_reuses_the_coverage_picks(raw_root, tmp_path):
    root = copy_root(raw_root, tmp_path / "data")
    layout = DataLayout(root)
    first = _prep(root)
    assert first.reused_selections == 0
    picks = layout.select_frames_path().read_text()
    again = _prep(root)
    assert again.reused_selections == sum(len(s) for s in again.scenes.values()) == 4
    assert layout.select_frames_path().read_text() == picks  # reused entries are the same picks
    scene = layout.split_file_path("val").read_text().split()[0]
    layout.pose_path(scene, 50).write_text("-inf " * 16)  # that scene's frame list changes
    third = _prep(root)
    assert third.reused_selections == 3
    entry = json.loads(layout.select_frames_path().read_text())
    changed = next(e for e in entry if e["video_id"].endswith(scene))
    assert not any(f.endswith("00050.jpg") for f in changed["frame_files"])
