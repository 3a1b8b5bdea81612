"""``vega3d visualize features`` on tiny random encoders of two families, on a synthetic scene."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from vega3d.cli import app
from vega3d.testing.tiny_generative import write_tiny_dinov3, write_tiny_wan


@pytest.mark.parametrize("encoder", ["wan_t2v", "dinov3"])
def test_visualize_features_writes_pictures_and_the_score(encoder, viewer_root, tmp_path, monkeypatch):
    monkeypatch.setenv("VEGA3D_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / encoder
    checkpoint = write_tiny_wan(folder)[0] if encoder == "wan_t2v" else write_tiny_dinov3(folder)
    scene = sorted(p.name for p in (viewer_root / "scannet" / "posed_images").iterdir())[0]
    out = tmp_path / "pictures"
    result = CliRunner().invoke(app, [
        "visualize", "features", "--scene", scene, "--encoder", encoder, "--data-root", str(viewer_root),
        "--set", f"generative.checkpoint={checkpoint}", "--frames", "3", "--patch", "1,2,1", "--output", str(out),
        "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["query"] == [1, 2, 1]
    assert summary["matched_pairs"] > 0 and -2.0 <= summary["score"] <= 2.0
    assert summary["score"] == pytest.approx(summary["matched_similarity"] - summary["other_similarity"])
    for name in (f"{scene}_{encoder}_pca.png", f"{scene}_{encoder}_correspondence.png"):
        assert Image.open(out / name).format == "PNG"
    assert {**json.loads((out / f"{scene}_{encoder}_consistency.json").read_text()), "files": summary["files"]} == summary


def test_bad_patch_is_a_usage_error(viewer_root, tmp_path):
    result = CliRunner().invoke(app, ["visualize", "features", "--scene", "scene0000_00", "--patch", "1,2",
                                      "--data-root", str(viewer_root), "--output", str(tmp_path)])
    assert result.exit_code == 2 and "frame,row,col" in result.output
