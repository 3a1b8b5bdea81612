"""Task scorers: oracle runs score 100, random runs score the computed chance level, problems are reported."""

import json
import math

import numpy as np
import pytest

from tests.evaluation.helpers import make_split, random_predictions
from vega3d.evaluation import predictions as preds_io
from vega3d.evaluation import tasks
from vega3d.evaluation.predictions import validate_predictions

NO_JAVA = tasks.ScoreSettings(meteor=False)


def scored(task, records, rows, settings=NO_JAVA):
    pset = validate_predictions(task, [r["id"] for r in records], [(None, p) for p in rows])
    return tasks.score(task, records, pset, settings)


@pytest.mark.parametrize(
    ("task", "keys"),
    [
        ("scanrefer", ["acc_iou25", "acc_iou50"]),
        ("multi3drefer", ["f1_iou25", "f1_iou50"]),
        ("scanqa", ["em", "em_normalized", "bleu1"]),
        ("sqa3d", ["em"]),
        ("scan2cap", ["bleu4_iou50", "rouge_l_iou50", "matched_iou50"]),
    ],
)
def test_oracle_scores_100(task, keys):
    records, _ = make_split(task, 60, seed=3)
    result = scored(task, records, tasks.oracle_predictions(task, records))
    for key in keys:
        assert result.metrics[key] == pytest.approx(100.0, abs=1e-6), key
    assert result.metrics["num_records"] == 60 and result.metrics["num_problems"] == 0
    for per_type in result.breakdown.values():
        assert all(v == pytest.approx(100.0) for v in per_type.values())
    assert len(result.rows) == 60


@pytest.mark.parametrize(("task", "key"), [("scanrefer", "acc_iou25"), ("scanrefer", "acc_iou50"),
                                           ("multi3drefer", "f1_iou25"), ("multi3drefer", "f1_iou50"),
                                           ("scanqa", "em_normalized"), ("sqa3d", "em")])
def test_random_run_scores_near_chance(task, key):
    n = 3000
    records, proposals = make_split(task, n, seed=5)
    chance = tasks.chance_level(task, records, proposals)[key]
    result = scored(task, records, random_predictions(task, records, proposals, seed=11))
    # per-record scores lie in [0, 1] with mean m_i, so the mean's std <= sqrt(m(1-m)/N); allow 5 sigma
    m = chance / 100
    tolerance = 100 * 5 * math.sqrt(m * (1 - m) / n)
    assert 1.0 < chance < 60.0
    assert abs(result.metrics[key] - chance) <= tolerance, (result.metrics[key], chance, tolerance)


def test_scanrefer_chance_exact_on_hand_case():
    gt = [0.5, 0.5, 0.5, 1.0, 1.0, 1.0]
    records = [{"id": "r", "video": "scannet/s", "box": gt, "eval_type": "unique"}]
    # proposals: identical (IoU 1), x-shifted by 0.5 (IoU 0.5/1.5 = 1/3), far away (0)
    proposals = {"scannet/s": [gt, [1.0, 0.5, 0.5, 1, 1, 1], [9, 9, 9, 1, 1, 1]]}
    assert tasks.chance_level("scanrefer", records, proposals) == pytest.approx(
        {"acc_iou25": 200 / 3, "acc_iou50": 100 / 3, "acc_iou25_blind": 100.0, "acc_iou50_blind": 100.0})


def test_scanrefer_blind_baseline_is_the_best_single_proposal_per_scene():
    a, b, c = ([x, 0.0, 0.0, 1.0, 1.0, 1.0] for x in (0.0, 3.0, 6.0))
    shifted = [0.5, 0.0, 0.0, 1.0, 1.0, 1.0]  # IoU 1/3 with a: a hit at 0.25, not at 0.5
    records = [{"id": f"s{i}", "video": "scannet/s", "box": box} for i, box in enumerate([a, a, a, b])]
    records += [{"id": f"t{i}", "video": "scannet/t", "box": box} for i, box in enumerate([a, b, c])]
    # scene s: proposal `shifted` hits the three a's at 0.25 only, proposal b hits one record at 0.5;
    # scene t: any one proposal hits one of its three different targets
    proposals = {"scannet/s": [shifted, b], "scannet/t": [a, b, c]}
    levels = tasks.chance_level("scanrefer", records, proposals)
    assert levels["acc_iou25_blind"] == pytest.approx(100 * (3 + 1) / 7)
    assert levels["acc_iou50_blind"] == pytest.approx(100 * (1 + 1) / 7)


def test_multi3drefer_chance_and_empty_baseline_on_hand_case():
    box = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    records = [{"id": "zt", "video": "scannet/s", "boxes": []},
               {"id": "st", "video": "scannet/s", "boxes": [box]},
               {"id": "mt", "video": "scannet/s", "boxes": [box, [3.0, 0.0, 0.0, 1.0, 1.0, 1.0]]}]
    proposals = {"scannet/s": [box, [9.0, 9.0, 9.0, 1.0, 1.0, 1.0]]}
    # one proposal drawn: zt 0; st hits with p 1/2 -> F1 1; mt hits with p 1/2 -> F1 2/3
    uniform = 100 * (0 + 0.5 * 1 + 0.5 * 2 / 3) / 3
    assert tasks.chance_level("multi3drefer", records, proposals) == pytest.approx(
        {"f1_iou25": uniform, "f1_iou50": uniform, "f1_iou25_empty": 100 / 3, "f1_iou50_empty": 100 / 3})


def test_qa_chance_hand_case():
    records = [{"id": "a", "answers": ["Two", "2"]}, {"id": "b", "answers": ["yes"]}, {"id": "c", "answers": ["yes"]}]
    # vocabulary {two, yes}: record a has 1 of 2, b and c 1 of 2 -> 50 %; majority "yes" -> 2/3
    assert tasks.chance_level("scanqa", records) == pytest.approx({"em_normalized": 50.0, "em_normalized_majority": 200 / 3})


def test_multi3drefer_theta_selection_at_scoring_time():
    box = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    far = [5.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    records = [{"id": "m", "boxes": [box], "eval_type": "st_w_d"}]
    # τ 0.07: probabilities ~ [0.5, 0.5, ~0] over (box, far, zero-target); θ 0.4 keeps one, θ 0.9 keeps both
    row = {"id": "m", "proposals": [box, far], "scores": [0.5, 0.5, 0.0]}
    low = scored("multi3drefer", records, [row], tasks.ScoreSettings(meteor=False, multi3drefer_threshold=0.4))
    high = scored("multi3drefer", records, [row], tasks.ScoreSettings(meteor=False, multi3drefer_threshold=0.9))
    assert low.metrics["f1_iou50"] == pytest.approx(100.0)
    assert high.metrics["f1_iou50"] == pytest.approx(100 * 2 * 1 / 3)


def test_scan2cap_unmatched_box_is_an_empty_caption():
    gt = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]
    records = [{"id": "c1", "box": gt, "references": ["a red chair ."]},
               {"id": "c2", "box": gt, "references": ["a blue table ."]}]
    rows = [{"id": "c1", "caption": "a red chair.", "box": gt},
            {"id": "c2", "caption": "a blue table.", "box": [0.7, 0, 0, 1, 1, 1]}]  # IoU 0.3/1.7 < 0.5
    result = scored("scan2cap", records, rows)
    assert result.metrics["matched_iou50"] == 50.0
    assert [r["prediction"] for r in result.rows] == ["a red chair.", ""]
    assert result.rows[0]["cider"] == pytest.approx(1000.0) and result.rows[1]["cider"] == 0.0
    assert result.metrics["cider_iou50"] == pytest.approx(500.0)


def test_malformed_predictions_are_reported_with_ids(tmp_path):
    records, _ = make_split("scanrefer", 5, seed=1)
    ids = [r["id"] for r in records]
    good = records[0]["box"]
    path = tmp_path / "predictions.jsonl"
    lines = [
        json.dumps({"id": ids[0], "box": good}),
        json.dumps({"box": good}),  # missing id
        json.dumps({"id": ids[1], "box": [float("nan"), 0, 0, 1, 1, 1]}),  # NaN box
        json.dumps({"id": ids[2], "box": [0, 0, 1, 1]}),  # wrong length
        json.dumps({"id": "nope", "box": good}),  # unknown id
        json.dumps({"id": ids[0], "box": good}),  # duplicate
        '{"id": "' + ids[3] + '", "box": [1, 2',  # torn line
    ]
    path.write_text("\n".join(lines) + "\n")
    pset = preds_io.load_predictions("scanrefer", str(path), ids)
    found = {(p.id, p.line): p.message for p in pset.problems}
    assert (None, 2) in found and "id" in found[(None, 2)]
    assert "NaN" in found[(ids[1], 3)]
    assert "6 numbers" in found[(ids[2], 4)]
    assert "unknown id" in found[("nope", 5)]
    assert "duplicate" in found[(ids[0], 6)]
    assert "not valid JSON" in found[(None, 7)]
    assert len(pset.problems) == 6
    assert pset.missing == ids[1:]
    result = tasks.score("scanrefer", records, pset, NO_JAVA)
    # the four records without a valid prediction are misses, not dropped: 1 of 5 correct
    assert result.metrics["acc_iou50"] == pytest.approx(20.0)
    assert result.metrics["num_problems"] == 6 and result.metrics["num_missing"] == 4
    error = preds_io.PredictionError(str(path), pset.problems)
    assert ids[1] in str(error) and "nope" in str(error)


def test_save_result_writes_files(tmp_path):
    records, _ = make_split("sqa3d", 12, seed=2)
    result = scored("sqa3d", records, tasks.oracle_predictions("sqa3d", records)[:-1])
    tasks.save_result(result, str(tmp_path / "sqa3d"))
    metrics = json.loads((tmp_path / "sqa3d" / "metrics.json").read_text())
    assert metrics["em"] == pytest.approx(100 * 11 / 12)
    breakdown = json.loads((tmp_path / "sqa3d" / "breakdown.json").read_text())
    counts = {t: sum(r["question_type"] == t for r in records) for t in breakdown}
    assert sum(counts.values()) == 12
    problems = json.loads((tmp_path / "sqa3d" / "problems.json").read_text()) if (
        tmp_path / "sqa3d" / "problems.json").exists() else []
    assert problems == []  # a missing prediction is listed in num_missing, not as a malformed line
    assert metrics["num_missing"] == 1
    assert np.isclose(sum(breakdown[t]["em"] * counts[t] for t in breakdown) / 12, metrics["em"])


def test_multi3drefer_selection_hand_computed():
    """θ selection at scoring time (τ = 1 for readable numbers): softmax([2, 1, 0, 1.5]) =
    [0.4740, 0.1744, 0.0641, 0.2875 (zero-target)]."""
    boxes = [[float(i), 0, 0, 1, 1, 1] for i in range(3)]
    pred = {"proposals": boxes, "scores": [2.0, 1.0, 0.0, 1.5]}

    def picked(theta):
        settings = tasks.ScoreSettings(meteor=False, multi3drefer_threshold=theta, ground_temperature=1.0)
        return [boxes.index(b) for b in tasks.multi3drefer_boxes(pred, settings)]

    s = np.array(pred["scores"])
    np.testing.assert_allclose(np.exp(s) / np.exp(s).sum(), [0.4740, 0.1744, 0.0641, 0.2875], atol=1e-4)
    assert picked(0.4) == [0]
    assert picked(0.5) == [0, 1]  # 0.474 < 0.5 <= 0.474 + 0.174
    assert picked(0.7) == [0, 1, 2]  # 0.712: all proposals, never the zero-target
    assert tasks.multi3drefer_boxes({"proposals": boxes, "scores": [0.1, 0.2, 0.3, 0.9]},
                                    tasks.ScoreSettings()) == []  # zero-target highest
