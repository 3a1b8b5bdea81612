"""Evaluation output -> one compact item per record for the viewer (text, boxes, score, correct or not).

Per task, the item's ``score`` orders the list worst first and ``ok`` feeds the correct/incorrect filter:

| task | score | correct when |
|---|---|---|
| scanrefer | IoU of the chosen box with the target | IoU >= 0.25 (Acc@0.25) |
| multi3drefer | F1@0.25 of the selected boxes | F1@0.25 = 1 (every target matched, no extra box) |
| scan2cap | CIDEr of the caption (0 when its box misses, SPEC.md 4) | box IoU >= 0.5 and CIDEr >= 1 |
| scanqa | CIDEr of the answer | exact match with a reference |
| sqa3d | normalised exact match | normalised exact match |

The scores are the evaluation's own per-record rows (``vega3d.evaluation.tasks.score``), so the viewer shows
exactly what the metrics counted. Boxes are rounded to centimetres; a ScanQA question shows the ground-truth
boxes of the objects it is about (its ``object_ids``) when the scene's boxes are given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from vega3d.data import records as templates
from vega3d.evaluation.tasks import EvalResult

CAPTION_CIDER_OK = 1.0


def _strip(text: str, prefix: str = "", suffix: str = "") -> str:
    text = text.removeprefix(prefix)
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def query_text(record: Mapping[str, Any]) -> str:
    """The description or question of a record, without the fixed prompt template around it."""
    prompt = record["conversations"][0]["value"].removeprefix(templates.IMAGE_TOKEN + "\n")
    ground_prefix = templates.GROUND_PROMPT.split("{description}")[0]
    task = record["task"]
    if task == "scanrefer":
        return _strip(prompt, ground_prefix)
    if task == "multi3drefer":
        return _strip(prompt, ground_prefix, templates.MULTI3DREFER_SUFFIX)
    if task == "scan2cap":
        return f"describe object {record['object_id']} ({record['metadata'].get('object_name', '?')})"
    if task == "scanqa":
        return _strip(prompt, suffix=templates.SCANQA_PROMPT.split("{question}")[1])
    return _strip(prompt, suffix=templates.SQA3D_PROMPT.split("{question}")[1])


def _boxes(value: Any) -> list[list[float]]:
    """A box, a list of boxes or None -> list of boxes rounded to cm."""
    if value is None:
        return []
    if value and not isinstance(value[0], (list, tuple)):
        value = [value]
    return [[round(float(v), 2) for v in box] for box in value]


def _item(task: str, record: Mapping[str, Any], row: Mapping[str, Any],
          prediction: Mapping[str, Any] | None, scene_boxes: Sequence[Sequence[float]]) -> dict[str, Any]:
    """One viewer item: task, id, scene, text, prediction, references, boxes, score, ok, type, metric label."""
    item: dict[str, Any] = {"task": task, "id": record["id"], "scene": record["scene_id"], "q": query_text(record)}
    if task == "scanrefer":
        iou = float(row["iou"])
        item.update(p=f"box IoU {iou:.2f}", r=[record.get("object_name", "")], gt=_boxes(record["box"]),
                    pred=_boxes(json.loads(row["prediction"])), score=iou, ok=iou >= 0.25, type=record["eval_type"],
                    metric=f"IoU {iou:.2f}")
    elif task == "multi3drefer":
        f1 = float(row["f1_iou25"])
        pred = _boxes(json.loads(row["prediction"]))
        item.update(p=f"{len(pred)} box(es), F1@0.25 {f1:.2f}", r=[f"{len(record['boxes'])} target(s)"],
                    gt=_boxes(record["boxes"]), pred=pred, score=f1, ok=f1 >= 1.0, type=record["eval_type"],
                    metric=f"F1@.25 {f1:.2f} F1@.5 {float(row['f1_iou50']):.2f}")
    elif task == "scan2cap":
        iou, cider = float(row["iou"]), float(row["cider"])
        box = None if prediction is None else prediction.get("box")
        item.update(p=row["prediction"] or "(no caption counted)", r=list(record["references"]),
                    gt=_boxes(record["box"]), pred=_boxes(box), score=cider,
                    ok=iou >= 0.5 and cider >= CAPTION_CIDER_OK, type="", metric=f"IoU {iou:.2f} CIDEr {cider:.2f}")
    elif task == "scanqa":
        cider = float(row["cider"])
        objects = [scene_boxes[i] for i in record["metadata"].get("object_ids", []) if 0 <= i < len(scene_boxes)]
        item.update(p=row["prediction"], r=list(record["answers"]), gt=_boxes(objects), pred=[], score=cider,
                    ok=bool(row["em"]), type="", metric=f"EM {int(row['em'])} CIDEr {cider:.2f}")
    else:
        em = float(row["em"])
        item.update(p=row["prediction"], r=list(record["answers"]), gt=[], pred=[], score=em, ok=bool(em),
                    type=row["question_type"], metric=f"EM {int(em)}")
    item["score"] = round(float(item["score"]), 4)
    item["ok"] = bool(item["ok"])
    return item


def task_items(result: EvalResult, records: Sequence[Mapping[str, Any]],
               predictions: Mapping[str, Mapping[str, Any]],
               gt_boxes: Mapping[str, Sequence[Sequence[float]]] | None = None) -> list[dict[str, Any]]:
    """Items of one scored task, worst first (incorrect before correct, then ascending score, then id).

    ``gt_boxes``: the ground-truth boxes per video (``metadata/scannet_<split>_gt_box.json``), for ScanQA.
    """
    if len(result.rows) != len(records):
        raise ValueError(f"{result.task}: {len(result.rows)} scored rows for {len(records)} records")
    gt_boxes = gt_boxes or {}
    items = [_item(result.task, rec, row, predictions.get(rec["id"]), gt_boxes.get(rec["video"], []))
             for rec, row in zip(records, result.rows, strict=True)]
    return sorted(items, key=lambda it: (it["ok"], it["score"], it["id"]))
