"""Model-backed predictors on the prepared synthetic root with a tiny random model (baseline, no generative)."""

import copy
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tests.evaluation.conftest import BASELINE
from tests.model.helpers import sharpen
from vega3d.cli import app
from vega3d.config import load_config
from vega3d.data.boxes import box_iou_matrix
from vega3d.evaluation import predictors, tasks
from vega3d.evaluation.predictions import validate_predictions


def predictor(loaded, task):
    cfg, model, tokenizer = loaded
    split = tasks.DEFAULT_SPLITS[task]
    props = tasks.load_proposals(cfg.data.root, split) if task in tasks.GROUNDING_TASKS + ("scan2cap",) else None
    return predictors.ModelPredictor(model, tokenizer, cfg, task, props)


def test_left_pad():
    ids, mask = predictors.left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.mark.parametrize("task", ["scanqa", "sqa3d", "scan2cap"])
def test_batched_generation_equals_one_by_one(loaded, task):
    cfg = loaded[0]
    records = tasks.load_records(cfg.data.root, task)[:5]
    predict = predictor(loaded, task)
    batched = predict(records)
    single = [predict([r])[0] for r in records]
    assert batched == single
    assert [p["id"] for p in batched] == [r["id"] for r in records]
    if task == "scan2cap":  # a caption exactly when a proposal overlaps the object with IoU >= 0.5
        assert sum(p["caption"] is not None for p in batched) >= 1
        for p, r in zip(batched, records, strict=True):
            assert (p["box"] is None) == (p["caption"] is None)
            if p["box"] is not None:
                assert box_iou_matrix(p["box"], r["box"])[0, 0] >= 0.5


@pytest.mark.parametrize("task", ["scanrefer", "multi3drefer"])
def test_grounding_predictions_are_scene_proposals(loaded, task):
    cfg = loaded[0]
    records = tasks.load_records(cfg.data.root, task)[:6]
    proposals = tasks.load_proposals(cfg.data.root, "val")
    preds = predictor(loaded, task)(records)
    pset = validate_predictions(task, [r["id"] for r in records], [(None, p) for p in preds])
    assert pset.problems == [] and pset.missing == []
    for pred, rec in zip(preds, records, strict=True):
        scene_boxes = proposals[rec["video"]]
        if task == "scanrefer":
            assert pred["box"] in scene_boxes
        else:
            assert pred["proposals"] == scene_boxes and len(pred["scores"]) == len(scene_boxes) + 1
    # batched forward scores equal batch-1 scores
    single = [predictor(loaded, task)([r])[0] for r in records]
    if task == "multi3drefer":
        np.testing.assert_allclose([p["scores"] for p in preds], [p["scores"] for p in single], atol=1e-5)
    else:
        assert preds == single


@pytest.mark.parametrize("task", ["scanrefer", "multi3drefer"])
def test_batch_8_grounding_gives_the_boxes_and_metrics_of_batch_1(loaded, task):
    cfg, model, tokenizer = loaded
    records = tasks.load_records(cfg.data.root, task)
    assert len(records) > 8
    model = copy.deepcopy(model)
    sharpen(model)  # hidden states that depend on the description, so predictions differ between records
    predict = predictor((cfg, model, tokenizer), task)
    batched = [p for start in range(0, len(records), 8) for p in predict(records[start : start + 8])]
    single = [predict([r])[0] for r in records]
    settings = tasks.ScoreSettings(meteor=False)
    if task == "scanrefer":
        boxes = [[p["box"]] for p in batched], [[p["box"]] for p in single]
    else:
        boxes = tuple([tasks.multi3drefer_boxes(p, settings) for p in preds] for preds in (batched, single))
    assert boxes[0] == boxes[1]
    assert len({json.dumps(b) for b in boxes[0]}) > 1  # the random model does not predict one constant box
    ids = [r["id"] for r in records]
    results = [tasks.score(task, records, validate_predictions(task, ids, [(None, p) for p in preds]), settings)
               for preds in (batched, single)]
    assert results[0].metrics == results[1].metrics and results[0].breakdown == results[1].breakdown


def test_oracle_and_chance_on_synthetic_split(prepared_root):
    for task in ("scanrefer", "multi3drefer", "sqa3d"):
        records = tasks.load_records(str(prepared_root), task)
        pset = validate_predictions(task, [r["id"] for r in records],
                                    [(None, p) for p in tasks.oracle_predictions(task, records)])
        result = tasks.score(task, records, pset, tasks.ScoreSettings(meteor=False))
        key = {"scanrefer": "acc_iou50", "multi3drefer": "f1_iou50", "sqa3d": "em"}[task]
        assert result.metrics[key] == pytest.approx(100.0)
    proposals = tasks.load_proposals(str(prepared_root), "val")
    records = tasks.load_records(str(prepared_root), "scanrefer")
    chance = tasks.chance_level("scanrefer", records, proposals)
    # one predicted box per synthetic object, so each target has ~1 good proposal among K
    expected = np.mean([1 / len(proposals[r["video"]]) for r in records]) * 100
    assert chance["acc_iou50"] == pytest.approx(expected, rel=0.35)


def test_eval_all_runs_the_model_end_to_end(prepared_root, tmp_path):
    out = tmp_path / "eval"
    args = ["eval", "all", "--data-root", str(prepared_root), "--output-uri", str(out), "--no-meteor",
            "--max-samples", "4", "--batch-size", "3", "--num-shards", "2"]
    for item in BASELINE:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    for task in tasks.TASKS:
        lines = (out / task / "predictions.jsonl").read_text().splitlines()
        assert len(lines) == 4
        metrics = json.loads((out / task / "metrics.json").read_text())
        assert metrics["num_records"] == 4 and metrics["num_problems"] == 0 and metrics["num_missing"] == 0
    report = (out / "report.md").read_text().splitlines()
    assert report[2].startswith("| tiny |") and "-" not in report[2].split("|", 2)[2]


def test_online_and_offline_generative_features_give_the_same_predictions(prepared_root, tmp_path):
    """Tiny Wan T2V online, then the same features extracted into the store and read by feature id."""
    from vega3d.generative.extract import extract_features
    from vega3d.generative.source import OfflineFeatures, OnlineFeatures
    from vega3d.testing.tiny_generative import write_tiny_wan

    wan, _ = write_tiny_wan(tmp_path / "tiny-wan-t2v")
    online = load_config("tiny", ["eval.max_new_tokens=6", f"data.root={prepared_root}",
                                  f"generative.checkpoint={wan}"])
    features = predictors.open_features(online, torch.device("cpu"))
    assert isinstance(features, OnlineFeatures) and features.channels > 0
    torch.manual_seed(0)
    model, tokenizer = predictors.load_eval_model(online, features.channels, torch.device("cpu"))
    assert model.config.generative_channels == features.channels
    records = tasks.load_records(str(prepared_root), "scanqa")[:3]
    online_predict = predictors.ModelPredictor(model, tokenizer, online, "scanqa", features=features)
    expected = online_predict(records)

    summary = extract_features(online, features.encoder, str(tmp_path / "features"), splits=("val",), progress=False)
    offline = load_config("tiny", ["eval.max_new_tokens=6", f"data.root={prepared_root}", "generative.mode=offline",
                                   f"generative.feature_id={summary.feature_id}",
                                   f"generative.feature_root={tmp_path / 'features'}"])
    stored = predictors.open_features(offline, torch.device("cpu"))
    assert isinstance(stored, OfflineFeatures) and stored.channels == features.channels
    offline_predict = predictors.ModelPredictor(model, tokenizer, offline, "scanqa", features=stored)
    scene = records[0]["scene_id"]
    frames, grid = online.data.frames_upbound, online.model.pooled_grid
    assert online_predict.scene_inputs(scene).generative.shape == (frames, features.channels, grid, grid)  # [V, C, g, g]
    torch.testing.assert_close(offline_predict.scene_inputs(scene).generative,
                               online_predict.scene_inputs(scene).generative)
    got = offline_predict(records)
    assert got == expected
    assert [p["id"] for p in got] == [r["id"] for r in records]
