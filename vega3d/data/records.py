"""Raw benchmark entries -> processed llava-style records (the contract in briefs/contracts.md).

One record per training / evaluation item: ``{"id", "task", "split", "video", "scene_id", "conversations",
"metadata", ...task fields}``, with the prompts of SPEC.md section 4 after ``"<image>\\n"``. Boxes are
[cx, cy, cz, dx, dy, dz] in the aligned frame, indexed by objectId. The spatial instruction is not part of
the records (the model's prompt builder adds it). Caption text is kept as written; normalisation belongs to
the evaluation.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vega3d.data.errors import DataFileError
from vega3d.data.layout import video_id

GROUND_PROMPT = "Identify the object according to the following description.\n{description}"
MULTI3DREFER_SUFFIX = "\nThere may be no corresponding object, or there may be one or more objects."
SCAN2CAP_PROMPT = "Given an object located at <coord> , describe the object in detail."
SCANQA_PROMPT = "{question} Answer the question simply."
SQA3D_PROMPT = "{situation} {question} Answer the question using a single word or phrase."
GROUND_ANSWER = "<ground>"
IMAGE_TOKEN = "<image>"
SQA3D_TYPES = ("what", "is", "how", "can", "which")


@dataclass(frozen=True)
class SceneObjects:
    """The annotated objects of one scene: ``boxes[i]`` belongs to objectId ``i``."""

    boxes: np.ndarray  # [M, 6] float64, aligned frame

    def box(self, object_id: int, where: str) -> list[float]:
        """The box of one object; ``where`` names the file and record for the error."""
        if not 0 <= object_id < len(self.boxes):
            raise DataFileError(
                where, f"object_id {object_id} is not an object of the scene (it has {len(self.boxes)})",
                "fix the record or re-create the benchmark file for this scene's annotation",
            )
        return [float(v) for v in self.boxes[object_id]]


def _conversation(prompt: str, answer: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": f"{IMAGE_TOKEN}\n{prompt}"}, {"from": "gpt", "value": answer}]


def _scene(scenes: Mapping[str, SceneObjects], scene: str, where: str) -> SceneObjects:
    if scene not in scenes:
        raise DataFileError(where, f"scene {scene} has no annotated objects (no box entry)",
                            "add the scene's scan files or drop its records from the benchmark file")
    return scenes[scene]


def _base(task: str, split: str, record_id: str, scene: str, prompt: str, answer: str,
          metadata: dict[str, Any]) -> dict[str, Any]:
    return {"id": record_id, "task": task, "split": split, "video": video_id(scene), "scene_id": scene,
            "conversations": _conversation(prompt, answer), "metadata": metadata}


def scanrefer_eval_types(entries: Sequence[dict[str, Any]], to_class: Callable[[str], str]) -> list[str]:
    """The released unique/multiple rule (SPEC.md Parity 4), one type per entry.

    Over the annotated objects of the split file, (scene, object_id) with the class ``to_class(object_name)``:
    an entry is 'unique' when its (scene, class) has exactly one annotated object, else 'multiple'.
    """
    annotated = {(e["scene_id"], int(e["object_id"])): to_class(e["object_name"]) for e in entries}
    per_class = Counter((scene, cls) for (scene, _), cls in annotated.items())
    return ["unique" if per_class[(e["scene_id"], annotated[(e["scene_id"], int(e["object_id"]))])] == 1
            else "multiple" for e in entries]


def scanrefer_records(entries: Sequence[dict[str, Any]], split: str, scenes: Mapping[str, SceneObjects],
                      source: str, to_class: Callable[[str], str] = str) -> list[dict[str, Any]]:
    """ScanRefer: one grounding record per description; answer ``<ground>``; ``eval_type`` by
    :func:`scanrefer_eval_types` with ``to_class`` (object_name -> class)."""
    records = []
    eval_types = scanrefer_eval_types(entries, to_class)
    for index, entry in enumerate(entries):
        where = f"{source} record {index}"
        scene, target = entry["scene_id"], int(entry["object_id"])
        objects = _scene(scenes, scene, where)
        box = objects.box(target, where)
        record = _base("scanrefer", split, f"scanrefer-{split}-{scene}-{target}-{entry['ann_id']}", scene,
                       GROUND_PROMPT.format(description=entry["description"]), GROUND_ANSWER,
                       {"ann_id": str(entry["ann_id"]), "source": source})
        record.update(target_id=target, box=box, object_name=entry["object_name"],
                      eval_type=eval_types[index])
        records.append(record)
    return records


def multi3drefer_records(entries: Sequence[dict[str, Any]], split: str, scenes: Mapping[str, SceneObjects],
                         source: str) -> list[dict[str, Any]]:
    """Multi3DRefer: zero, one or many targets; answer ``<ground>``."""
    records = []
    for index, entry in enumerate(entries):
        where = f"{source} record {index}"
        scene = entry["scene_id"]
        objects = _scene(scenes, scene, where)
        targets = [int(t) for t in entry["object_ids"]]
        prompt = GROUND_PROMPT.format(description=entry["description"]) + MULTI3DREFER_SUFFIX
        record = _base("multi3drefer", split, f"multi3drefer-{split}-{scene}-{entry['ann_id']}", scene, prompt,
                       GROUND_ANSWER, {"ann_id": str(entry["ann_id"]), "source": source})
        record.update(target_ids=targets, boxes=[objects.box(t, where) for t in targets],
                      eval_type=entry["eval_type"])
        records.append(record)
    return records


def scan2cap_records(entries: Sequence[dict[str, Any]], split: str, scenes: Mapping[str, SceneObjects],
                     source: str, per_object: bool) -> list[dict[str, Any]]:
    """Scan2Cap from ScanRefer descriptions.

    ``per_object`` (evaluation): one record per (scene, object) with every description as ``references``
    and the first as the answer. Otherwise (training): one record per description, answered by it.
    """
    by_object: dict[tuple[str, int], list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for index, entry in enumerate(entries):
        by_object[(entry["scene_id"], int(entry["object_id"]))].append((index, entry))
    records = []
    for (scene, object_id), items in by_object.items():
        where = f"{source} record {items[0][0]}"
        box = _scene(scenes, scene, where).box(object_id, where)
        references = [entry["description"] for _, entry in items]
        chosen = items[:1] if per_object else items
        for _, entry in chosen:
            suffix = "" if per_object else f"-{entry['ann_id']}"
            record = _base("scan2cap", split, f"scan2cap-{split}-{scene}-{object_id}{suffix}", scene,
                           SCAN2CAP_PROMPT, entry["description"],
                           {"ann_id": str(entry["ann_id"]), "object_name": entry["object_name"], "source": source})
            record.update(object_id=object_id, box=box, references=references)
            records.append(record)
    return records


def scanqa_records(entries: Sequence[dict[str, Any]], split: str, source: str,
                   per_answer: bool = False) -> list[dict[str, Any]]:
    """ScanQA: answer = the first reference answer; all answers kept for evaluation.

    ``per_answer`` (the released training data, SPEC.md Parity 1): one record per answer instead, id
    ``scanqa_<question_id>_<idx>``, answered by that answer.
    """
    records = []
    for entry in entries:
        scene = entry["scene_id"]
        targets = list(enumerate(entry["answers"])) if per_answer else [(None, entry["answers"][0])]
        for idx, answer in targets:
            record_id = f"scanqa-{entry['question_id']}" if idx is None else f"scanqa_{entry['question_id']}_{idx}"
            record = _base("scanqa", split, record_id, scene, SCANQA_PROMPT.format(question=entry["question"]),
                           answer, {"object_ids": list(entry.get("object_ids", [])),
                                    "object_names": list(entry.get("object_names", [])), "source": source})
            record.update(question_id=str(entry["question_id"]), answers=list(entry["answers"]))
            records.append(record)
    return records


def sqa3d_question_type(question: str) -> str:
    """The released rule: what | is | how | can | which by prefix of the left-stripped, lower-cased question,
    else others ("Isn't ..." -> is, "Whatever ..." -> what)."""
    text = question.lstrip().lower()
    return next((kind for kind in SQA3D_TYPES if text.startswith(kind)), "others")


def sqa3d_records(entries: Sequence[dict[str, Any]], split: str, source: str,
                  per_situation: bool = False) -> list[dict[str, Any]]:
    """SQA3D (questions joined with annotations): situation + question; answer = the first answer.

    ``per_situation`` (the released training data, SPEC.md Parity 2): one record per situation of
    ``alternative_situation + [situation]``, id ``sqa3d-<split>-<question_id>-<k>``.
    """
    records = []
    for entry in entries:
        scene = entry["scene_id"]
        if per_situation:
            situations = list(enumerate([*entry["alternative_situation"], entry["situation"]]))
        else:
            situations = [(None, entry["situation"])]
        for k, situation in situations:
            suffix = "" if k is None else f"-{k}"
            record = _base("sqa3d", split, f"sqa3d-{split}-{entry['question_id']}{suffix}", scene,
                           SQA3D_PROMPT.format(situation=situation, question=entry["question"]),
                           entry["answers"][0],
                           {"answer_type": entry["answer_type"], "position": entry["position"],
                            "rotation": entry["rotation"], "alternative_situation": entry["alternative_situation"],
                            "source": source})
            record.update(question_id=str(entry["question_id"]), answers=list(entry["answers"]),
                          question_type=sqa3d_question_type(entry["question"]), situation=situation)
            records.append(record)
    return records
