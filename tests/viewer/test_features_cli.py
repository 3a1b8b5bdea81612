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


def test_stored_features_draw_the_same_pictures_as_the_encoder(viewer_root, tmp_path, monkeypatch):
    from vega3d.config import load_config
    from vega3d.generative.extract import extract_features
    from vega3d.generative.registry import build_encoder

    monkeypatch.setenv("VEGA3D_CACHE", str(tmp_path / "cache"))
    checkpoint = write_tiny_wan(tmp_path / "wan")[0]
    cfg = load_config("tiny", [f"data.root={viewer_root}", f"generative.checkpoint={checkpoint}"])
    store = tmp_path / "features"
    scene = sorted(p.name for p in (viewer_root / "scannet" / "posed_images").iterdir())[0]
    summary = extract_features(cfg, build_encoder(cfg.generative, cfg.model.pooled_grid), str(store),
                               splits=("train", "val", "test"), progress=False)
    runs = {}
    for source in (["--feature-id", summary.feature_id], ["--device", "cpu"]):
        out = tmp_path / source[0]
        result = CliRunner().invoke(app, [
            "visualize", "features", "--scene", scene, "--data-root", str(viewer_root), "--frames", "3",
            "--set", f"generative.checkpoint={checkpoint}", "--set", f"generative.feature_root={store}",
            "--output", str(out), *source])
        assert result.exit_code == 0, result.output
        runs[source[0]] = json.loads(result.output.strip().splitlines()[-1])
    stored, computed = runs["--feature-id"], runs["--device"]
    assert stored["files"][0].endswith(f"{scene}_{summary.feature_id}_pca.png")
    assert stored["matched_pairs"] == computed["matched_pairs"] > 0
    assert stored["score"] == pytest.approx(computed["score"], abs=1e-4)
    missing = CliRunner().invoke(app, ["visualize", "features", "--scene", scene, "--data-root", str(viewer_root),
                                       "--set", f"generative.feature_root={store}", "--feature-id", "nope"])
    assert missing.exit_code == 2 and "missing" in missing.output
