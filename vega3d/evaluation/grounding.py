"""Grounding metrics: ScanRefer Acc@k and Multi3DRefer F1@k (SPEC.md section 4).

Boxes are axis-aligned [cx, cy, cz, dx, dy, dz] in the aligned scene frame; IoU is
``vega3d.data.boxes.box_iou_matrix``. Scores are percentages.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from vega3d.data.boxes import box_iou_matrix

IOU_THRESHOLDS: tuple[float, ...] = (0.25, 0.5)
SCANREFER_TYPES: tuple[str, ...] = ("unique", "multiple")
MULTI3DREFER_TYPES: tuple[str, ...] = ("zt_w_d", "zt_wo_d", "st_w_d", "st_wo_d", "mt")


def threshold_key(prefix: str, threshold: float) -> str:
    """Metric name of a threshold: ("acc", 0.25) -> "acc_iou25" (MLflow-safe, no "@")."""
    return f"{prefix}_iou{round(threshold * 100):d}"


def paired_iou(pred_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """IoU of row i of ``pred_boxes`` [N, 6] with row i of ``gt_boxes`` [N, 6] -> [N]."""
    pred = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 6)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 6)
    if len(pred) != len(gt):
        raise ValueError(f"paired_iou needs as many predictions ({len(pred)}) as targets ({len(gt)})")
    return np.array([box_iou_matrix(p, g)[0, 0] for p, g in zip(pred, gt, strict=True)], dtype=np.float64)


def _mean_by_type(values: np.ndarray, types: Sequence[str], order: Sequence[str]) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for value, kind in zip(values, types, strict=True):
        groups[kind].append(float(value))
    ordered = [k for k in order if k in groups] + sorted(k for k in groups if k not in order)
    return {kind: 100.0 * float(np.mean(groups[kind])) for kind in ordered}


def accuracy_at(
    ious: Sequence[float], eval_types: Sequence[str], thresholds: Sequence[float] = IOU_THRESHOLDS
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """ScanRefer accuracy: share of queries whose predicted box has IoU >= k with the target.

    Returns (overall {"acc_iou25": %, ...}, breakdown {"unique": {...}, "multiple": {...}}).
    """
    ious = np.asarray(ious, dtype=np.float64)
    if len(ious) == 0 or len(ious) != len(eval_types):
        raise ValueError(f"accuracy_at needs one eval type per IoU (got {len(ious)} IoUs, {len(eval_types)} types)")
    overall: dict[str, float] = {}
    breakdown: dict[str, dict[str, float]] = defaultdict(dict)
    for k in thresholds:
        key = threshold_key("acc", k)
        hits = ious >= k
        overall[key] = 100.0 * float(hits.mean())
        for kind, value in _mean_by_type(hits, eval_types, SCANREFER_TYPES).items():
            breakdown[kind][key] = value
    return overall, dict(breakdown)


def matched_true_positives(pred_boxes: np.ndarray, gt_boxes: np.ndarray, thresholds: Sequence[float]) -> list[int]:
    """Hungarian matching maximising the summed IoU; per threshold k, the matches with IoU >= k."""
    iou = box_iou_matrix(pred_boxes, gt_boxes)  # [P, G]
    rows, cols = linear_sum_assignment(iou, maximize=True)
    matched = iou[rows, cols]
    return [int((matched >= k).sum()) for k in thresholds]


def f1_at(
    pred_boxes: np.ndarray | Sequence, gt_boxes: np.ndarray | Sequence, thresholds: Sequence[float] = IOU_THRESHOLDS
) -> list[float]:
    """Multi3DRefer F1 of one query per threshold: 2 TP / (n_pred + n_gt); both empty = 1, one empty = 0."""
    pred = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 6)
    gt = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 6)
    if len(pred) == 0 and len(gt) == 0:
        return [1.0 for _ in thresholds]
    if len(pred) == 0 or len(gt) == 0:
        return [0.0 for _ in thresholds]
    tps = matched_true_positives(pred, gt, thresholds)
    return [2.0 * tp / (len(pred) + len(gt)) for tp in tps]


def f1_summary(
    f1_scores: Sequence[Sequence[float]], eval_types: Sequence[str], thresholds: Sequence[float] = IOU_THRESHOLDS
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Mean F1 in percent overall and per eval_type from per-query scores [N][len(thresholds)]."""
    scores = np.asarray(f1_scores, dtype=np.float64).reshape(-1, len(thresholds))
    if len(scores) == 0 or len(scores) != len(eval_types):
        raise ValueError(f"f1_summary needs one eval type per query (got {len(scores)} scores, {len(eval_types)} types)")
    overall: dict[str, float] = {}
    breakdown: dict[str, dict[str, float]] = defaultdict(dict)
    for column, k in enumerate(thresholds):
        key = threshold_key("f1", k)
        overall[key] = 100.0 * float(scores[:, column].mean())
        for kind, value in _mean_by_type(scores[:, column], eval_types, MULTI3DREFER_TYPES).items():
            breakdown[kind][key] = value
    return overall, dict(breakdown)
