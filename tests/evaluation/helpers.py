"""Hand-made evaluation records in the processed-record contract, plus deterministic predictors."""

from __future__ import annotations

import hashlib

import numpy as np

from vega3d.evaluation import grounding, tasks

ANSWERS = ["brown", "two", "left", "white chair", "yes", "no", "table", "3", "the window"]
M3DR_TYPES = {0: ("zt_w_d", "zt_wo_d"), 1: ("st_w_d", "st_wo_d")}


def _jitter(box: np.ndarray, rng: np.random.Generator, scale: float) -> list[float]:
    out = box.copy()
    out[:3] += rng.normal(0, scale, 3) * box[3:]
    out[3:] *= np.exp(rng.normal(0, scale, 3))
    return [float(v) for v in out]


def make_split(task: str, num_records: int, seed: int = 0, num_scenes: int = 6, objects: int = 8):
    """(records, proposals by video) of one task; proposals are jittered objects plus distractors."""
    rng = np.random.default_rng(seed)
    scenes = {}
    for s in range(num_scenes):
        centres = rng.uniform(-3, 3, (objects, 3))
        sizes = rng.uniform(0.3, 1.5, (objects, 3))
        boxes = np.concatenate([centres, sizes], axis=1)
        props = [_jitter(b, rng, scale) for b in boxes for scale in (0.05, 0.3)]
        props += [[*rng.uniform(-3, 3, 3), *rng.uniform(0.3, 1.5, 3)] for _ in range(4)]
        scenes[f"scene{s:04d}_00"] = (boxes, props)
    records = []
    for i in range(num_records):
        scene = f"scene{i % num_scenes:04d}_00"
        boxes, _ = scenes[scene]
        rec = {"id": f"{task}_{i:05d}", "task": task, "split": "val", "video": f"scannet/{scene}", "scene_id": scene,
               "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}],
               "metadata": {}}
        obj = int(rng.integers(objects))
        if task == "scanrefer":
            rec.update(target_id=obj, box=boxes[obj].tolist(), object_name="chair",
                       eval_type=str(rng.choice(grounding.SCANREFER_TYPES)))
        elif task == "multi3drefer":
            ids = sorted(rng.choice(objects, size=int(rng.integers(0, 4)), replace=False).tolist())
            kind = M3DR_TYPES[len(ids)][int(rng.integers(2))] if len(ids) < 2 else "mt"
            rec.update(target_ids=ids, boxes=[boxes[j].tolist() for j in ids], eval_type=kind)
        elif task == "scan2cap":
            rec.update(object_id=obj, box=boxes[obj].tolist(),
                       references=[f"this is a chair number {obj} . it is near the table .",
                                   f"a brown chair , the {obj} th one in the room ."])
        else:
            answers = [str(a) for a in rng.choice(ANSWERS, size=int(rng.integers(1, 3)), replace=False)]
            rec.update(question_id=str(i), answers=answers)
            if task == "sqa3d":
                rec.update(answers=answers[:1], situation="I am sitting.",
                           question_type=str(rng.choice(["what", "is", "how", "can", "which", "others"])))
        records.append(rec)
    proposals = {f"scannet/{scene}": props for scene, (_, props) in scenes.items()}
    return records, proposals


def random_predictions(task: str, records, proposals, seed: int = 1):
    """The uniformly random predictor whose expected score tasks.chance_level computes."""
    rng = np.random.default_rng(seed)
    vocab = tasks.answer_vocabulary(records, task) if task in ("scanqa", "sqa3d") else []
    preds = []
    for rec in records:
        if task in ("scanqa", "sqa3d"):
            preds.append({"id": rec["id"], "answer": vocab[int(rng.integers(len(vocab)))]})
            continue
        props = proposals[rec["video"]]
        box = props[int(rng.integers(len(props)))]
        preds.append({"id": rec["id"], "box": box} if task == "scanrefer" else {"id": rec["id"], "boxes": [box]})
    return preds


def stable_hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


def dummy_predict_batch(batch):
    """Deterministic SQA3D-style predictor: the answer depends only on the record id."""
    return [{"id": r["id"], "answer": ANSWERS[stable_hash(r["id"]) % len(ANSWERS)]} for r in batch]
