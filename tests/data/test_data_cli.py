"""`vega3d data synth|prep|check` through typer's CliRunner, exit codes asserted."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vega3d.cli import app
from vega3d.data.layout import DataLayout
from vega3d.testing.synthetic import load_truth

SMALL = ["--num-train", "2", "--num-val", "1", "--num-test", "1", "--frames", "8", "--width", "80",
         "--height", "60", "--seed", "5"]


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def synthesised(runner, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli") / "data"
    result = runner.invoke(app, ["data", "synth", "--data-root", str(root), *SMALL])
    assert result.exit_code == 0, result.output
    return root, result


def test_synth_writes_the_requested_scenes_and_benchmarks(synthesised):
    root, result = synthesised
    assert "wrote 4 synthetic scenes" in result.output
    truths = load_truth(root)
    assert [t.split for t in truths] == ["train", "train", "val", "test"]
    layout = DataLayout(root)
    assert len(list(layout.posed_images_dir(truths[0].scene).glob("*.jpg"))) == 8
    scanrefer = json.loads((root / "benchmark/scanrefer/ScanRefer_filtered_train.json").read_text())
    assert {e["scene_id"] for e in scanrefer} == {t.scene for t in truths if t.split == "train"}


def test_synth_rejects_invalid_settings_naming_the_field(runner, tmp_path):
    result = runner.invoke(app, ["data", "synth", "--data-root", str(tmp_path / "x"), "--min-objects", "6",
                                 "--max-objects", "3"])
    assert result.exit_code == 2
    assert "min_objects (6) must be <= max_objects (3)" in result.output
    assert not (tmp_path / "x").exists()


def test_check_then_prep_then_check(runner, synthesised):
    root, _ = synthesised
    result = runner.invoke(app, ["data", "check", "--data-root", str(root)])
    assert result.exit_code == 0, result.output
    assert "no problems" in result.output
    result = runner.invoke(app, ["data", "prep", "--data-root", str(root), "--set", "data.frames_upbound=4"])
    assert result.exit_code == 0, result.output
    assert "prepared 4 scenes" in result.output
    records = json.loads(DataLayout(root).processed_path("sqa3d", "test").read_text())
    assert f"sqa3d_test: {len(records)} records" in result.output
    assert runner.invoke(app, ["data", "check", "--data-root", str(root)]).exit_code == 0


def test_check_and_prep_fail_on_a_bad_root_with_the_file_in_a_table(runner, synthesised, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(synthesised[0], root)
    shutil.rmtree(root / "processed", ignore_errors=True)
    pose = DataLayout(root).pose_path(load_truth(root)[0].scene, 10)
    pose.write_text("1 0 0 0\n0 1 0 nan\n0 0 1 0\n0 0 0 1\n")
    strict = ["--max-invalid-frames", "0.1"]  # 1 of 8 frames invalid is above 10%
    result = runner.invoke(app, ["data", "check", "--data-root", str(root), *strict])
    assert result.exit_code == 1
    assert "1 problem(s)" in result.output and "00010: pose has -inf/NaN" in result.output
    assert "image bodies were not decoded (use --deep)" in result.output
    result = runner.invoke(app, ["data", "prep", "--data-root", str(root), *strict])
    assert result.exit_code == 1
    assert "nothing was written" in result.output and not (root / "processed").exists()
    result = runner.invoke(app, ["data", "prep", "--data-root", str(root)])  # default 25%: the frame is excluded
    assert result.exit_code == 0, result.output
    assert "1 invalid frame(s) excluded in 1 scene(s)" in result.output


def test_prep_rejects_a_bad_override(runner, synthesised):
    result = runner.invoke(app, ["data", "prep", "--data-root", str(synthesised[0]), "--set", "data.voxel_size=-1"])
    assert result.exit_code == 2
    assert "data.voxel_size" in result.output
