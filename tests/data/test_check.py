"""`check_data_root`: a clean root has no problem; each defect is reported once, naming its file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.data.prepared import add_benchmarks, copy_root
from vega3d.data.check import check_data_root
from vega3d.data.layout import SCANREFER_FILE, DataLayout, video_id


@pytest.fixture(scope="module")
def clean_root(small_synthetic_root, tmp_path_factory) -> Path:
    root = copy_root(small_synthetic_root, tmp_path_factory.mktemp("check") / "data")
    add_benchmarks(root)
    return root


@pytest.fixture
def root(clean_root, tmp_path) -> Path:
    return copy_root(clean_root, tmp_path / "data")


def _scene(root: Path, split: str = "train") -> str:
    return DataLayout(root).split_file_path(split).read_text().split()[0]


def _only_problem(root: Path):
    problems = check_data_root(root)
    assert len(problems) == 1, problems
    return problems[0]


def test_clean_root_has_no_problem(clean_root):
    assert check_data_root(clean_root) == []


def test_missing_root():
    (problem,) = check_data_root("/nonexistent/vega3d-root")
    assert (problem.path, problem.problem) == ("/nonexistent/vega3d-root", "data root /nonexistent/vega3d-root does not exist")
    assert "`vega3d data synth --data-root DIR`" in problem.fix


def test_a_folder_without_the_top_folders_is_one_problem(tmp_path):
    (tmp_path / "scannet").mkdir()
    (problem,) = check_data_root(tmp_path)  # not one problem per missing file
    assert problem.problem == f"data root {tmp_path} is not a VEGA-3D data root: no benchmark/ folder"


def test_missing_split_list(root):
    path = DataLayout(root).split_file_path("val")
    path.unlink()
    problem = _only_problem(root)
    assert problem.path == str(path) and problem.problem == "split list missing"


def test_missing_color_frame(root):
    layout = DataLayout(root)
    path = layout.color_path(_scene(root), 10)
    path.unlink()
    problem = _only_problem(root)
    assert problem.path == str(path) and "frame file missing" in problem.problem


def test_depth_of_the_wrong_size(root):
    layout = DataLayout(root)
    path = layout.depth_path(_scene(root), 0)
    buffer = io.BytesIO()
    Image.fromarray(np.full((10, 20), 1000, dtype=np.uint16)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    problem = _only_problem(root)
    assert problem.path == str(path) and "depth is 20x10" in problem.problem


def test_depth_that_is_not_16_bit(root):
    layout = DataLayout(root)
    path = layout.depth_path(_scene(root), 10)
    Image.fromarray(np.zeros((120, 160), dtype=np.uint8)).save(path, "PNG")
    problem = _only_problem(root)
    assert problem.path == str(path) and "16-bit" in problem.problem


def test_depth_intrinsics_that_do_not_fit_the_depth_size(root):
    layout = DataLayout(root)
    path = layout.depth_intrinsic_path(_scene(root))
    path.write_text("500 0 900 0\n0 500 700 0\n0 0 1 0\n0 0 0 1\n")
    problem = _only_problem(root)
    assert problem.path == str(path) and "principal point (900, 700)" in problem.problem


def test_benchmark_object_id_outside_the_aggregation(root):
    layout = DataLayout(root)
    path = layout.benchmark_path(SCANREFER_FILE, "val")
    entries = json.loads(path.read_text())
    entries[1]["object_id"] = "57"
    path.write_text(json.dumps(entries))
    problem = _only_problem(root)
    assert problem.path == str(path) and "record 1" in problem.problem and "[57]" in problem.problem


def test_benchmark_record_with_a_bad_field(root):
    layout = DataLayout(root)
    path = layout.benchmark_path(SCANREFER_FILE, "train")
    entries = json.loads(path.read_text())
    del entries[0]["description"]
    path.write_text(json.dumps(entries))
    problem = _only_problem(root)
    assert problem.path == str(path) and "'description' missing" in problem.problem
    assert problem.fix == "fix the record or re-create the file" and problem.fix not in problem.problem


def test_missing_benchmark_file_says_it_once_with_its_fix(root):
    path = DataLayout(root).benchmark_path(SCANREFER_FILE, "train")
    path.unlink()
    problem = _only_problem(root)
    assert (problem.path, problem.problem, problem.fix) == (
        str(path), "file missing", "run `vega3d data synth` or download the benchmark")


def test_too_many_predicted_boxes(root):
    layout = DataLayout(root)
    path = layout.pred_box_path("val")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({video_id(_scene(root, "val")): [[0, 0, 0, 1, 1, 1]] * 51}))
    problem = _only_problem(root)
    assert problem.path == str(path) and "51 predicted boxes" in problem.problem


def test_aggregation_object_ids_must_be_consecutive(root):
    layout = DataLayout(root)
    path = layout.aggregation_path(_scene(root))
    aggregation = json.loads(path.read_text())
    aggregation["segGroups"][0]["objectId"] = 99
    path.write_text(json.dumps(aggregation))
    problems = check_data_root(root)
    assert problems and problems[0].path == str(path) and "0..M-1" in problems[0].problem


def test_scene_listed_but_missing_on_disk(root):
    layout = DataLayout(root)
    with layout.split_file_path("test").open("a") as handle:
        handle.write("scene0998_00\n")
    problem = _only_problem(root)
    assert problem.path == str(layout.posed_images_dir("scene0998_00")) and "not on disk" in problem.problem


def test_val_scene_without_predicted_masks(root):
    path = DataLayout(root).mask_path(_scene(root, "val"))
    path.unlink()
    problem = _only_problem(root)
    assert problem.path == str(path) and "predicted instance masks missing" in problem.problem
