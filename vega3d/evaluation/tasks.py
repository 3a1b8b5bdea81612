"""The five evaluations: processed records + validated predictions -> metrics, breakdown, per-item rows.

Records follow the processed llava-style contract (one JSON list per task and split). Predictions follow
``vega3d.evaluation.predictions``. A record whose prediction is missing or malformed is scored as a miss
(IoU 0, F1 0, empty answer, empty caption) and listed in ``EvalResult.problems``; nothing is dropped.
Metric names are MLflow-safe (``acc_iou25``, ``f1_iou50``, ``cider_iou50``, ``em``...), values in percent.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vega3d import storage
from vega3d.benchmarks import ALL_TASKS as TASKS
from vega3d.benchmarks import GROUNDING_TASKS
from vega3d.data.boxes import box_iou_matrix
from vega3d.data.layout import DataLayout
from vega3d.evaluation import captions, grounding, qa
from vega3d.evaluation.predictions import PredictionSet, Problem

DEFAULT_SPLITS: dict[str, str] = {
    "scanrefer": "val",
    "multi3drefer": "val",
    "scan2cap": "val",
    "scanqa": "val",
    "sqa3d": "test",
}


@dataclass
class ScoreSettings:
    """Knobs of the scoring step (defaults: the paper's evaluation)."""

    multi3drefer_threshold: float = 0.4  # θ of Multi3DRefer selection (0.25 in the paper text)
    ground_temperature: float = 0.07
    caption_iou: float = 0.5
    meteor: bool = True  # METEOR needs Java


@dataclass
class EvalResult:
    """Scores of one task on one split."""

    task: str
    metrics: dict[str, float]
    breakdown: dict[str, dict[str, float]]
    rows: list[dict[str, Any]]  # one per record: id, prediction, reference, per-item score
    problems: list[Problem] = field(default_factory=list)


def load_records(root: str, task: str, split: str | None = None) -> list[dict[str, Any]]:
    """Processed records of a task (``processed/<task>_<split>_llava_style.json`` under a data root)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}: choose one of {list(TASKS)}")
    path = DataLayout(root).processed_path(task, split or DEFAULT_SPLITS[task])
    if not path.exists():
        raise FileNotFoundError(f"{path}: no processed {task} records; run `vega3d data prep` first")
    records = json.loads(path.read_text())
    if not isinstance(records, list) or not records:
        raise ValueError(f"{path}: expected a non-empty JSON list of records")
    return records


def load_proposals(root: str, split: str) -> dict[str, list[list[float]]]:
    """Predicted boxes per video (``metadata/scannet_<split>_pred_box.json``)."""
    path = DataLayout(root).pred_box_path(split)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no predicted boxes; run `vega3d data prep` first")
    return json.loads(path.read_text())


def _summary(records: Sequence[Mapping[str, Any]], predictions: PredictionSet) -> dict[str, float]:
    return {
        "num_records": float(len(records)),
        "num_problems": float(len(predictions.problems)),
        "num_missing": float(len(predictions.missing)),
    }


def score_scanrefer(records, predictions: PredictionSet, settings: ScoreSettings) -> EvalResult:
    """Acc@0.25/0.5 overall, unique, multiple."""
    ious, rows = [], []
    for rec in records:
        pred = predictions.by_id.get(rec["id"])
        iou = 0.0 if pred is None else float(box_iou_matrix(pred["box"], rec["box"])[0, 0])
        ious.append(iou)
        rows.append({"id": rec["id"], "eval_type": rec["eval_type"], "iou": iou,
                     "prediction": json.dumps(pred["box"] if pred else None), "reference": json.dumps(rec["box"])})
    overall, breakdown = grounding.accuracy_at(ious, [r["eval_type"] for r in records])
    return EvalResult("scanrefer", {**overall, **_summary(records, predictions)}, breakdown, rows, predictions.problems)


def multi3drefer_boxes(pred: Mapping[str, Any], settings: ScoreSettings) -> list[list[float]]:
    """The boxes a Multi3DRefer prediction names: given directly, or selected from its scores over
    proposals + zero-target with θ (``vega3d.model.grounding.select_multi3drefer``, SPEC.md section 2)."""
    if "boxes" in pred:
        return list(pred["boxes"])
    import torch

    from vega3d.model.grounding import select_multi3drefer

    scores = torch.tensor(pred["scores"], dtype=torch.float64)  # [K + 1]
    picked = select_multi3drefer(scores, settings.ground_temperature, settings.multi3drefer_threshold)
    return [pred["proposals"][i] for i in picked]


def score_multi3drefer(records, predictions: PredictionSet, settings: ScoreSettings) -> EvalResult:
    """F1@0.25/0.5 overall and per eval_type (a missing prediction scores F1 = 0, even for zero-target)."""
    scores, rows = [], []
    for rec in records:
        pred = predictions.by_id.get(rec["id"])
        boxes = None if pred is None else multi3drefer_boxes(pred, settings)
        f1 = [0.0, 0.0] if boxes is None else grounding.f1_at(boxes, rec["boxes"])
        scores.append(f1)
        rows.append({"id": rec["id"], "eval_type": rec["eval_type"], "f1_iou25": f1[0], "f1_iou50": f1[1],
                     "prediction": json.dumps(boxes), "reference": json.dumps(rec["boxes"])})
    overall, breakdown = grounding.f1_summary(scores, [r["eval_type"] for r in records])
    return EvalResult("multi3drefer", {**overall, **_summary(records, predictions)}, breakdown, rows,
                      predictions.problems)


def score_scan2cap(records, predictions: PredictionSet, settings: ScoreSettings) -> EvalResult:
    """CIDEr, BLEU-4, METEOR, ROUGE-L @ IoU 0.5. A caption counts only when its box overlaps the object with
    IoU >= caption_iou; otherwise (no box, box too far, no caption, no prediction) it is the empty caption."""
    refs: dict[str, list[str]] = {}
    caps: dict[str, str | None] = {}
    ious: list[float] = []
    for rec in records:
        pred = predictions.by_id.get(rec["id"])
        box = None if pred is None else pred.get("box")
        iou = 0.0 if box is None else float(box_iou_matrix(box, rec["box"])[0, 0])
        ious.append(iou)
        refs[rec["id"]] = list(rec["references"])
        caps[rec["id"]] = pred["caption"] if pred is not None and iou >= settings.caption_iou else None
    scored = captions.scan2cap_scores(refs, caps, meteor=settings.meteor)
    suffix = grounding.threshold_key("", settings.caption_iou)  # "_iou50"
    wanted = ("cider", "bleu4", "meteor", "rouge_l")
    metrics = {f"{name}{suffix}": scored.corpus[name] for name in wanted if name in scored.corpus}
    metrics[f"matched{suffix}"] = 100.0 * float(np.mean(np.asarray(ious) >= settings.caption_iou))
    rows = [{"id": rec["id"], "iou": iou, "prediction": caps[rec["id"]] or "", "reference": refs[rec["id"]][0],
             "cider": scored.per_item["cider"][i]} for i, (rec, iou) in enumerate(zip(records, ious, strict=True))]
    return EvalResult("scan2cap", {**metrics, **_summary(records, predictions)}, {}, rows, predictions.problems)


def score_scanqa(records, predictions: PredictionSet, settings: ScoreSettings) -> EvalResult:
    """CIDEr, BLEU-1..4, METEOR, ROUGE-L, EM (raw) and EM (normalised)."""
    answers = {rec["id"]: predictions.by_id[rec["id"]]["answer"] if rec["id"] in predictions.by_id else ""
               for rec in records}
    refs = {rec["id"]: list(rec["answers"]) for rec in records}
    scored = captions.scanqa_scores(refs, answers, meteor=settings.meteor)
    em = [qa.exact_match(answers[k], refs[k]) for k in refs]
    em_norm = [qa.exact_match(answers[k], refs[k], normalize=True) for k in refs]
    metrics = dict(scored.corpus)
    metrics["em"] = 100.0 * float(np.mean(em))
    metrics["em_normalized"] = 100.0 * float(np.mean(em_norm))
    rows = [{"id": k, "prediction": answers[k], "reference": " | ".join(refs[k]), "em": float(em[i]),
             "cider": scored.per_item["cider"][i]} for i, k in enumerate(refs)]
    return EvalResult("scanqa", {**metrics, **_summary(records, predictions)}, {}, rows, predictions.problems)


def score_sqa3d(records, predictions: PredictionSet, settings: ScoreSettings) -> EvalResult:
    """EM after the released normalisation overall and per question type (``em``), plus the EM after our
    normalisation (``em_vega3d_norm``, overall only)."""
    answers = [predictions.by_id[r["id"]]["answer"] if r["id"] in predictions.by_id else "" for r in records]
    refs = [list(r["answers"]) for r in records]
    types = [r["question_type"] for r in records]
    released = qa.normalize_sqa3d_released
    overall, per_type = qa.exact_match_by_type(answers, refs, types, normalize=released)
    ours = 100.0 * float(np.mean([qa.exact_match(a, ref, normalize=True) for a, ref in zip(answers, refs, strict=True)]))
    order = [t for t in qa.SQA3D_QUESTION_TYPES if t in per_type] + [t for t in per_type if t not in qa.SQA3D_QUESTION_TYPES]
    breakdown = {t: {"em": per_type[t]} for t in order}
    rows = [{"id": r["id"], "question_type": t, "prediction": a, "reference": " | ".join(ref),
             "em": float(qa.exact_match(a, ref, normalize=released))}
            for r, a, ref, t in zip(records, answers, refs, types, strict=True)]
    return EvalResult("sqa3d", {"em": overall, "em_vega3d_norm": ours, **_summary(records, predictions)}, breakdown,
                      rows, predictions.problems)


SCORERS = {
    "scanrefer": score_scanrefer,
    "multi3drefer": score_multi3drefer,
    "scan2cap": score_scan2cap,
    "scanqa": score_scanqa,
    "sqa3d": score_sqa3d,
}


def score(task: str, records: Sequence[Mapping[str, Any]], predictions: PredictionSet,
          settings: ScoreSettings | None = None) -> EvalResult:
    """Score validated predictions of one task against its records."""
    if task not in SCORERS:
        raise ValueError(f"unknown task {task!r}: choose one of {list(TASKS)}")
    return SCORERS[task](records, predictions, settings or ScoreSettings())


def save_result(result: EvalResult, task_uri: str) -> None:
    """Write ``metrics.json``, ``breakdown.json`` and ``problems.json`` (if any) under a task folder/URI."""
    storage.write_json(storage.join(task_uri, "metrics.json"), result.metrics, indent=2)
    storage.write_json(storage.join(task_uri, "breakdown.json"), result.breakdown, indent=2)
    if result.problems:
        storage.write_json(storage.join(task_uri, "problems.json"),
                           [{"id": p.id, "line": p.line, "message": p.message} for p in result.problems], indent=2)


def oracle_predictions(task: str, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ground truth as predictions (a sanity run that must score 100 on accuracy/EM/F1)."""
    makers = {
        "scanrefer": lambda r: {"box": list(r["box"])},
        "multi3drefer": lambda r: {"boxes": [list(b) for b in r["boxes"]]},
        "scan2cap": lambda r: {"caption": r["references"][0], "box": list(r["box"])},
        "scanqa": lambda r: {"answer": r["answers"][0]},
        "sqa3d": lambda r: {"answer": r["answers"][0]},
    }
    return [{"id": r["id"], **makers[task](r)} for r in records]


def answer_normalizer(task: str) -> qa.Normalizer:
    """The normalisation of a QA task's headline EM: released for SQA3D, ours for ScanQA's em_normalized."""
    return qa.normalize_sqa3d_released if task == "sqa3d" else qa.normalize_answer


def answer_vocabulary(records: Sequence[Mapping[str, Any]], task: str = "scanqa") -> list[str]:
    """Distinct normalised reference answers of a QA split, sorted."""
    norm = answer_normalizer(task)
    return sorted({norm(a) for r in records for a in r["answers"]})


def chance_level(
    task: str,
    records: Sequence[Mapping[str, Any]],
    proposals: Mapping[str, Sequence[Sequence[float]]] | None = None,
) -> dict[str, float]:
    """Expected scores of a uniformly random predictor, computed exactly for the split (percent).

    - scanrefer: one proposal of the scene drawn uniformly -> mean share of proposals with IoU >= k; plus
      "<key>_blind": the best predictor that ignores the description, one proposal per scene chosen with
      hindsight to hit the most of that scene's targets (above it, a model must be reading the description);
    - multi3drefer: one proposal drawn uniformly -> F1 = 2·[max IoU >= k] / (1 + n_gt) (0 for zero-target);
      plus "<key>_empty": always predicting nothing (F1 1 on the zero-target queries, 0 elsewhere);
    - scanqa/sqa3d: an answer drawn uniformly from the split's normalised answer vocabulary V ->
      normalised EM = mean |refs ∩ V| / |V| ("em_normalized" / "em"), plus the majority-answer baseline.
    Scan2Cap has no accuracy metric; its chance level is an empty dict.
    """
    if task in GROUNDING_TASKS:
        if proposals is None:
            raise ValueError(f"chance_level({task!r}) needs the predicted boxes per video (proposals)")
        values = []
        for rec in records:
            props = np.asarray(proposals.get(rec["video"], []), dtype=np.float64).reshape(-1, 6)
            values.append(_grounding_chance(task, props, rec))
        keys = [grounding.threshold_key("acc" if task == "scanrefer" else "f1", k) for k in grounding.IOU_THRESHOLDS]
        mean = 100.0 * np.mean(values, axis=0)
        levels = dict(zip(keys, (float(v) for v in mean), strict=True))
        if task == "scanrefer":
            blind = _scanrefer_blind_hits(records, proposals)
            levels.update({f"{key}_blind": 100.0 * hits / len(records) for key, hits in zip(keys, blind, strict=True)})
        else:
            empty = 100.0 * float(np.mean([len(rec["boxes"]) == 0 for rec in records]))
            levels.update({f"{key}_empty": empty for key in keys})
        return levels
    if task in ("scanqa", "sqa3d"):
        norm = answer_normalizer(task)
        vocab = answer_vocabulary(records, task)
        uniform = float(np.mean([len({norm(a) for a in r["answers"]}) / len(vocab) for r in records]))
        counts = Counter(norm(r["answers"][0]) for r in records)
        majority = counts.most_common(1)[0][0]
        majority_em = float(np.mean([qa.exact_match(majority, r["answers"], normalize=norm) for r in records]))
        key = "em" if task == "sqa3d" else "em_normalized"
        return {key: 100.0 * uniform, f"{key}_majority": 100.0 * majority_em}
    if task == "scan2cap":
        return {}
    raise ValueError(f"unknown task {task!r}: choose one of {list(TASKS)}")


def _scanrefer_blind_hits(
    records: Sequence[Mapping[str, Any]], proposals: Mapping[str, Sequence[Sequence[float]]]
) -> list[int]:
    """Per IoU threshold: records hit when every scene answers all its descriptions with its single best proposal."""
    by_video: dict[str, list[Sequence[float]]] = {}
    for rec in records:
        by_video.setdefault(rec["video"], []).append(rec["box"])
    hits = [0 for _ in grounding.IOU_THRESHOLDS]
    for video, targets in by_video.items():
        props = np.asarray(proposals.get(video, []), dtype=np.float64).reshape(-1, 6)
        if len(props) == 0:
            continue
        iou = box_iou_matrix(props, np.asarray(targets, dtype=np.float64).reshape(-1, 6))  # [K, records]
        for i, k in enumerate(grounding.IOU_THRESHOLDS):
            hits[i] += int((iou >= k).sum(axis=1).max())
    return hits


def _grounding_chance(task: str, props: np.ndarray, rec: Mapping[str, Any]) -> list[float]:
    if len(props) == 0:
        return [0.0 for _ in grounding.IOU_THRESHOLDS]
    if task == "scanrefer":
        iou = box_iou_matrix(props, rec["box"])[:, 0]  # [K]
        return [float(np.mean(iou >= k)) for k in grounding.IOU_THRESHOLDS]
    gt = np.asarray(rec["boxes"], dtype=np.float64).reshape(-1, 6)
    if len(gt) == 0:
        return [0.0 for _ in grounding.IOU_THRESHOLDS]
    best = box_iou_matrix(props, gt).max(axis=1)  # [K]
    return [float(np.mean(best >= k)) * 2.0 / (1 + len(gt)) for k in grounding.IOU_THRESHOLDS]
