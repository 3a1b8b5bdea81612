"""Readers of the raw benchmark files in their public formats, with field validation.

ScanRefer, Multi3DRefer, ScanQA and SQA3D ship as JSON files (SPEC.md section 5; names in
``vega3d.data.layout``). Each reader returns the list of records and raises ``BenchmarkFormatError`` naming
the file, the record index, the scene and the field when a record does not have the public structure.
Scan2Cap has no file of its own: it uses the ScanRefer descriptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

SQA3D_QUESTION_TYPES = ("what", "is", "how", "can", "which", "others")
MULTI3DREFER_EVAL_TYPES = ("zt_w_d", "zt_wo_d", "st_w_d", "st_wo_d", "mt")


class BenchmarkFormatError(ValueError):
    """A raw benchmark file or one of its records does not have the public structure."""


def _load(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise BenchmarkFormatError(f"{path}: file missing; run `vega3d data synth` or download the benchmark")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BenchmarkFormatError(f"{path}: not valid JSON ({error}); re-download or re-create it") from None


def _fail(path: Path, index: int, record: Any, message: str) -> BenchmarkFormatError:
    scene = record.get("scene_id") if isinstance(record, dict) else None
    return BenchmarkFormatError(
        f"{path}: record {index} (scene_id={scene!r}): {message}; fix the record or re-create the file"
    )


def _is_int_string(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _is_int_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)


# field -> (predicate, what the field must be)
Rule = tuple[Callable[[Any], bool], str]
_STR: Rule = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
_INT_STR: Rule = (_is_int_string, "an integer written as a string")
_SCANREFER: dict[str, Rule] = {
    "scene_id": _STR, "object_id": _INT_STR, "object_name": _STR, "ann_id": _INT_STR, "description": _STR,
    "token": (_is_str_list, "a list of strings"),
}
_MULTI3DREFER: dict[str, Rule] = {
    "scene_id": _STR, "object_ids": (_is_int_list, "a list of integers"), "description": _STR,
    "ann_id": (lambda v: isinstance(v, (int, str)), "an integer or string"),
    "eval_type": (lambda v: v in MULTI3DREFER_EVAL_TYPES, f"one of {MULTI3DREFER_EVAL_TYPES}"),
}
_SCANQA: dict[str, Rule] = {
    "question_id": _STR, "scene_id": _STR, "question": _STR,
    "answers": (lambda v: _is_str_list(v) and len(v) > 0, "a non-empty list of strings"),
    "object_ids": (_is_int_list, "a list of integers"), "object_names": (_is_str_list, "a list of strings"),
}
_SQA3D_QUESTION: dict[str, Rule] = {
    "question_id": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "scene_id": _STR, "situation": _STR, "question": _STR,
    "alternative_situation": (_is_str_list, "a list of strings"),
}
_SQA3D_ANNOTATION: dict[str, Rule] = {
    "question_id": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "scene_id": _STR, "answer_type": _STR,
    "answers": (
        lambda v: isinstance(v, list) and len(v) > 0
        and all(isinstance(a, dict) and isinstance(a.get("answer"), str) for a in v),
        'a non-empty list of {"answer": str, "answer_id": int}',
    ),
    "position": (lambda v: isinstance(v, dict) and all(isinstance(v.get(k), (int, float)) for k in "xyz"),
                 'a mapping {"x", "y", "z"} of numbers'),
    "rotation": (lambda v: isinstance(v, dict)
                 and all(isinstance(v.get(k), (int, float)) for k in ("_x", "_y", "_z", "_w")),
                 'a quaternion mapping {"_x", "_y", "_z", "_w"} of numbers'),
}


def _validate_list(path: Path, records: Any, rules: dict[str, Rule]) -> list[dict[str, Any]]:
    if not isinstance(records, list):
        raise BenchmarkFormatError(f"{path}: expected a JSON list of records, got {type(records).__name__}")
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise _fail(path, index, record, f"expected an object, got {type(record).__name__}")
        for field, (ok, what) in rules.items():
            if field not in record:
                raise _fail(path, index, record, f"field {field!r} missing (must be {what})")
            if not ok(record[field]):
                raise _fail(path, index, record, f"field {field!r} must be {what}, got {record[field]!r}")
    return records


def read_scanrefer(path: str | Path) -> list[dict[str, Any]]:
    """``ScanRefer_filtered_<split>.json``: scene_id, object_id (str), object_name, ann_id (str), description."""
    return _validate_list(Path(path), _load(path), _SCANREFER)


def read_multi3drefer(path: str | Path) -> list[dict[str, Any]]:
    """``multi3drefer_<split>.json``: scene_id, object_ids [int], description, ann_id, eval_type."""
    return _validate_list(Path(path), _load(path), _MULTI3DREFER)


def read_scanqa(path: str | Path) -> list[dict[str, Any]]:
    """``ScanQA_v1.0_<split>.json``: question_id, scene_id, question, answers [str], object_ids, object_names."""
    return _validate_list(Path(path), _load(path), _SCANQA)


def read_sqa3d(questions_path: str | Path, annotations_path: str | Path) -> list[dict[str, Any]]:
    """SQA3D questions + annotations files joined on question_id.

    Returns one dict per question: the question fields (situation, alternative_situation, question) plus
    ``answers`` (list of str), ``answer_type``, ``position`` and ``rotation`` from the annotation.
    """
    questions_path, annotations_path = Path(questions_path), Path(annotations_path)
    questions = _load(questions_path)
    annotations = _load(annotations_path)
    if not isinstance(questions, dict) or "questions" not in questions:
        raise BenchmarkFormatError(f'{questions_path}: expected {{"questions": [...]}} (the SQA3D structure)')
    if not isinstance(annotations, dict) or "annotations" not in annotations:
        raise BenchmarkFormatError(f'{annotations_path}: expected {{"annotations": [...]}} (the SQA3D structure)')
    question_list = _validate_list(questions_path, questions["questions"], _SQA3D_QUESTION)
    annotation_list = _validate_list(annotations_path, annotations["annotations"], _SQA3D_ANNOTATION)
    by_id = {a["question_id"]: a for a in annotation_list}
    if len(by_id) != len(annotation_list):
        raise BenchmarkFormatError(f"{annotations_path}: duplicate question_id; every question needs one annotation")
    joined = []
    for index, question in enumerate(question_list):
        annotation = by_id.get(question["question_id"])
        if annotation is None:
            raise _fail(questions_path, index, question,
                        f"question_id {question['question_id']} has no annotation in {annotations_path}")
        if annotation["scene_id"] != question["scene_id"]:
            raise _fail(questions_path, index, question,
                        f"scene_id differs from its annotation ({annotation['scene_id']!r})")
        joined.append({
            **question,
            "answers": [a["answer"] for a in annotation["answers"]],
            "answer_type": annotation["answer_type"],
            "position": annotation["position"],
            "rotation": annotation["rotation"],
        })
    return joined
