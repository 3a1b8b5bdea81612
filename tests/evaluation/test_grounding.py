"""Grounding metrics on hand-computed cases."""

import numpy as np
import pytest

from vega3d.data.boxes import box_iou_matrix
from vega3d.evaluation import grounding


def unit_box(x0: float, x1: float) -> list[float]:
    """A box spanning [x0, x1] in x and [0, 1] in y and z (so IoU is a 1-D interval IoU)."""
    return [(x0 + x1) / 2, 0.5, 0.5, x1 - x0, 1.0, 1.0]


def test_threshold_keys():
    assert grounding.threshold_key("acc", 0.25) == "acc_iou25"
    assert grounding.threshold_key("f1", 0.5) == "f1_iou50"


def test_paired_iou_hand_values():
    pred = [unit_box(0, 1), unit_box(0, 1), unit_box(0, 2)]
    gt = [unit_box(0, 1), unit_box(0.5, 1.5), unit_box(3, 4)]
    # identical -> 1; overlap 0.5 over union 1.5 -> 1/3; disjoint -> 0
    np.testing.assert_allclose(grounding.paired_iou(pred, gt), [1.0, 1 / 3, 0.0], atol=1e-7)


def test_accuracy_overall_unique_multiple():
    ious = [0.9, 0.3, 0.1, 0.6]
    types = ["unique", "multiple", "multiple", "unique"]
    overall, breakdown = grounding.accuracy_at(ious, types)
    assert overall == {"acc_iou25": 75.0, "acc_iou50": 50.0}
    assert breakdown["unique"] == {"acc_iou25": 100.0, "acc_iou50": 100.0}
    assert breakdown["multiple"] == {"acc_iou25": 50.0, "acc_iou50": 0.0}
    assert list(breakdown) == ["unique", "multiple"]


def test_iou_exactly_at_threshold_counts():
    overall, _ = grounding.accuracy_at([0.25, 0.5], ["unique", "unique"])
    assert overall == {"acc_iou25": 100.0, "acc_iou50": 50.0}


def test_f1_empty_cases():
    assert grounding.f1_at([], []) == [1.0, 1.0]
    assert grounding.f1_at([unit_box(0, 1)], []) == [0.0, 0.0]
    assert grounding.f1_at([], [unit_box(0, 1)]) == [0.0, 0.0]


def test_f1_hand_computed():
    gt = [unit_box(0, 1), unit_box(5, 6)]
    # pred 1 matches gt 1 exactly, pred 2 has IoU 1/3 with gt 2, pred 3 matches nothing.
    pred = [unit_box(0, 1), unit_box(5.5, 6.5), unit_box(10, 11)]
    # @0.25: TP = 2 -> 2*2/(3+2) = 0.8; @0.5: TP = 1 -> 2/5 = 0.4
    assert grounding.f1_at(pred, gt) == pytest.approx([0.8, 0.4])


def greedy_f1(pred, gt, k):
    """Greedy matching (each prediction in turn takes its best unmatched target) - the baseline Hungarian beats."""
    iou = box_iou_matrix(pred, gt)
    used, tp = set(), 0
    for row in iou:
        order = [j for j in np.argsort(-row) if j not in used]
        if order:
            used.add(order[0])
            tp += row[order[0]] >= k
    return 2 * tp / (len(pred) + len(gt))


def test_hungarian_beats_greedy_on_crafted_case():
    gt = [unit_box(0, 1), unit_box(0.4, 1.4)]
    pred = [unit_box(0.2, 1.2), unit_box(-0.3, 0.7)]
    iou = box_iou_matrix(pred, gt)
    # pred0: [0.2,1.2] vs gt0 [0,1]: 0.8/1.2; vs gt1 [0.4,1.4]: 0.8/1.2 - tie broken to gt0 by greedy order
    # pred1: [-0.3,0.7] vs gt0: 0.7/1.3; vs gt1: 0.3/1.7
    np.testing.assert_allclose(iou, [[0.8 / 1.2, 0.8 / 1.2], [0.7 / 1.3, 0.3 / 1.7]], atol=1e-7)
    # greedy: pred0 -> gt0, pred1 -> gt1 (IoU 0.176 < 0.5): TP@0.5 = 1 -> F1 = 0.5
    assert greedy_f1(pred, gt, 0.5) == pytest.approx(0.5)
    # Hungarian: pred0 -> gt1 (0.667), pred1 -> gt0 (0.538): TP@0.5 = 2 -> F1 = 1
    assert grounding.f1_at(pred, gt) == pytest.approx([1.0, 1.0])


def test_f1_summary_per_type():
    scores = [[1.0, 1.0], [0.5, 0.0], [0.0, 0.0], [1.0, 0.5]]
    types = ["zt_w_d", "mt", "mt", "st_wo_d"]
    overall, breakdown = grounding.f1_summary(scores, types)
    assert overall == {"f1_iou25": 62.5, "f1_iou50": 37.5}
    assert breakdown == {
        "zt_w_d": {"f1_iou25": 100.0, "f1_iou50": 100.0},
        "st_wo_d": {"f1_iou25": 100.0, "f1_iou50": 50.0},
        "mt": {"f1_iou25": 25.0, "f1_iou50": 0.0},
    }
