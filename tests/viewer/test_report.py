"""The report step's pictures: training curves from a history, the viewer and curves beside report.md."""

from __future__ import annotations

import io
import json
import shutil

import pytest
from PIL import Image

from tests.viewer.helpers import embedded_data
from vega3d.config import load_config
from vega3d.viewer.curves import curve_series, curves_png
from vega3d.viewer.report import CURVES_FILE, VIEWER_FILE, write_run_pictures

HISTORY = [  # steps alternate task groups; DeepSpeed set-ups may give no gradient norm (None)
    {"step": 2, "group": "ground", "loss": 2.0, "lr": 1e-3, "task_losses": {"scanrefer": 2.0}, "samples_per_s": 1,
     "grad_norm": 0.5},
    {"step": 1, "group": "qa", "loss": 3.0, "lr": 1e-3, "task_losses": {"scanqa": 3.5, "sqa3d": 2.5},
     "samples_per_s": 1, "grad_norm": 1.5},
    {"step": 3, "group": "qa", "loss": 1.0, "lr": 1e-3, "task_losses": {"scanqa": 1.5}, "samples_per_s": 1,
     "grad_norm": None},
]


def test_curve_series_follow_each_task_and_the_gradient_norm():
    losses, norms = curve_series(HISTORY)
    assert losses == {"scanqa": ([1, 3], [3.5, 1.5]), "scanrefer": ([2], [2.0]), "sqa3d": ([1], [2.5])}
    assert norms == ([1, 2], [1.5, 0.5])


def test_curves_png():
    image = Image.open(io.BytesIO(curves_png(HISTORY)))
    assert image.format == "PNG" and image.size == (1100, 400)
    with pytest.raises(ValueError, match="empty"):
        curves_png([])


def test_run_pictures_land_beside_the_report(viewer_root, eval_output, tmp_path):
    out, counts, _ = eval_output
    eval_dir = shutil.copytree(out, tmp_path / "eval")
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    (train_dir / "train_history.json").write_text(json.dumps(HISTORY))
    cfg = load_config("tiny", [f"data.root={viewer_root}", f"eval.output_uri={eval_dir}",
                               f"train.output_uri={train_dir}"])
    pictures = write_run_pictures(cfg)
    assert pictures.viewer_uri == str(eval_dir / VIEWER_FILE) and pictures.curves_uri == str(eval_dir / CURVES_FILE)
    assert Image.open(eval_dir / CURVES_FILE).format == "PNG"
    items = embedded_data((eval_dir / VIEWER_FILE).read_text())["items"]
    assert len(items) == sum(counts.values()) and pictures.records == counts
    assert pictures.incorrect["sqa3d"] == counts["sqa3d"] // 2
    summary = pictures.markdown()
    assert f"| sqa3d | {counts['sqa3d']} | {counts['sqa3d'] // 2} |" in summary
    assert f"`{eval_dir / VIEWER_FILE}`" in summary
    # no history: the viewer still comes, the curves do not
    shutil.rmtree(train_dir)
    assert write_run_pictures(cfg).curves_uri is None
