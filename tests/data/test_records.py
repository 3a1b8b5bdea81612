"""Processed llava-style records from raw entries: prompts, task fields, eval types, per-object captions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from vega3d.config import SyntheticConfig
from vega3d.data.benchmark_formats import read_sqa3d
from vega3d.data.errors import DataFileError
from vega3d.data.layout import (
    MULTI3DREFER_FILE,
    SCANQA_FILE,
    SCANREFER_FILE,
    SQA3D_ANNOTATIONS_FILE,
    SQA3D_QUESTIONS_FILE,
    DataLayout,
)
from vega3d.data.records import (
    SceneObjects,
    multi3drefer_records,
    scan2cap_records,
    scanqa_records,
    scanrefer_eval_types,
    scanrefer_records,
    sqa3d_question_type,
    sqa3d_records,
)
from vega3d.testing.synthetic import scene_names, scene_truth
from vega3d.testing.synthetic_benchmarks import generate_benchmarks, write_benchmarks


@pytest.fixture(scope="module")
def truths():
    cfg = SyntheticConfig(num_train=4, num_val=2, num_test=1)
    return {scene: scene_truth(scene, split, 3, cfg) for split, names in scene_names(cfg).items() for scene in names}


@pytest.fixture(scope="module")
def files(truths):
    return generate_benchmarks(list(truths.values()), seed=3)


@pytest.fixture(scope="module")
def objects(truths):
    return {scene: SceneObjects(np.array([o.box for o in t.objects])) for scene, t in truths.items()}


def _human(record):
    assert record["conversations"][0]["from"] == "human" and record["conversations"][1]["from"] == "gpt"
    assert record["conversations"][0]["value"].startswith("<image>\n")
    return record["conversations"][0]["value"][len("<image>\n"):]


def test_scanrefer_records(truths, files, objects):
    entries = files[SCANREFER_FILE.format(split="val")]
    label_ids = {label: str(o.nyu40_id) for t in truths.values() for o in t.objects for label in [o.label]}
    records = scanrefer_records(entries, "val", objects, "ScanRefer_filtered_val.json",
                                lambda name: label_ids[name.replace("_", " ")])
    assert len(records) == len(entries)
    for entry, record in zip(entries, records, strict=True):
        truth = truths[entry["scene_id"]]
        target = truth.objects[int(entry["object_id"])]
        assert _human(record) == ("Identify the object according to the following description.\n"
                                  + entry["description"])
        assert record["conversations"][1]["value"] == "<ground>"
        assert record["video"] == f"scannet/{entry['scene_id']}" and record["task"] == "scanrefer"
        assert record["target_id"] == target.object_id and record["box"] == target.box
        annotated = {int(e["object_id"]) for e in entries if e["scene_id"] == entry["scene_id"]}
        same_class = sum(truth.objects[i].nyu40_id == target.nyu40_id for i in annotated)
        assert record["eval_type"] == ("unique" if same_class == 1 else "multiple")
    assert {r["eval_type"] for r in records} == {"unique", "multiple"}
    assert len({r["id"] for r in records}) == len(records)


def test_multi3drefer_records_carry_target_boxes(truths, files, objects):
    entries = files[MULTI3DREFER_FILE.format(split="train")]
    records = multi3drefer_records(entries, "train", objects, "multi3drefer_train.json")
    for entry, record in zip(entries, records, strict=True):
        truth = truths[entry["scene_id"]]
        assert _human(record).endswith("\nThere may be no corresponding object, or there may be one or more objects.")
        assert entry["description"] in _human(record)
        assert record["target_ids"] == entry["object_ids"]
        assert record["boxes"] == [truth.objects[i].box for i in entry["object_ids"]]
        assert record["eval_type"] == entry["eval_type"]
    assert any(r["boxes"] == [] for r in records) and any(len(r["boxes"]) > 1 for r in records)


def test_scan2cap_val_one_record_per_object_with_every_reference(truths, files, objects):
    entries = files[SCANREFER_FILE.format(split="val")]
    records = scan2cap_records(entries, "val", objects, "ScanRefer_filtered_val.json", per_object=True)
    expected = Counter((e["scene_id"], int(e["object_id"])) for e in entries)
    assert Counter((r["scene_id"], r["object_id"]) for r in records) == Counter(dict.fromkeys(expected, 1))
    for record in records:
        descriptions = [e["description"] for e in entries
                        if (e["scene_id"], int(e["object_id"])) == (record["scene_id"], record["object_id"])]
        assert record["references"] == descriptions
        assert record["conversations"][1]["value"] == descriptions[0]
        assert _human(record) == "Given an object located at <coord> , describe the object in detail."
        assert record["box"] == truths[record["scene_id"]].objects[record["object_id"]].box
    train = scan2cap_records(files[SCANREFER_FILE.format(split="train")], "train", objects, "x", per_object=False)
    assert len(train) == len(files[SCANREFER_FILE.format(split="train")])
    assert len({r["id"] for r in train}) == len(train)


def test_scanqa_records(files):
    entries = files[SCANQA_FILE.format(split="val")]
    records = scanqa_records(entries, "val", "ScanQA_v1.0_val.json")
    for entry, record in zip(entries, records, strict=True):
        assert _human(record) == f"{entry['question']} Answer the question simply."
        assert record["conversations"][1]["value"] == entry["answers"][0]
        assert record["answers"] == entry["answers"] and record["question_id"] == entry["question_id"]


def test_sqa3d_records(tmp_path, truths, files):
    write_benchmarks(tmp_path, list(truths.values()), seed=3)
    layout = DataLayout(tmp_path)
    entries = read_sqa3d(layout.benchmark_path(SQA3D_QUESTIONS_FILE, "test"),
                         layout.benchmark_path(SQA3D_ANNOTATIONS_FILE, "test"))
    records = sqa3d_records(entries, "test", "v1_balanced_questions_test_scannetv2.json")
    assert len(records) == len(files[SQA3D_QUESTIONS_FILE.format(split="test")]["questions"])
    for entry, record in zip(entries, records, strict=True):
        assert _human(record) == (f"{entry['situation']} {entry['question']} "
                                  "Answer the question using a single word or phrase.")
        assert record["situation"] == entry["situation"] and record["answers"] == entry["answers"]
        assert record["question_type"] == sqa3d_question_type(entry["question"])


@pytest.mark.parametrize(("question", "kind"), [
    ("What color is the chair?", "what"), ("Is the bed on my left?", "is"), ("how many chairs?", "how"),
    ("Can I see it?", "can"), ("Which side is it on?", "which"), ("If I turn around, will it be there?", "others"),
    ("Whatever happened?", "what"), ("  Isn't it red?", "is"), ("CAN'T i go?", "can"), ("Where is it?", "others"),
    ("", "others"),
])
def test_sqa3d_question_type_by_released_prefix(question, kind):
    assert sqa3d_question_type(question) == kind


def test_bad_object_id_names_the_file_and_record(files, objects):
    entries = [dict(e) for e in files[SCANREFER_FILE.format(split="val")]]
    entries[2]["object_id"] = "99"
    with pytest.raises(DataFileError, match=r"ScanRefer_filtered_val\.json record 2: object_id 99 is not an object"):
        scanrefer_records(entries, "val", objects, "ScanRefer_filtered_val.json")
    entries[2]["scene_id"] = "scene0999_00"
    with pytest.raises(DataFileError, match="scene0999_00 has no annotated objects"):
        scanrefer_records(entries, "val", objects, "ScanRefer_filtered_val.json")


SCANQA_ENTRIES = [  # 3 + 1 answers -> 4 released training records
    {"question_id": "train-scene0000_00-0", "scene_id": "scene0000_00", "question": "What is on the desk?",
     "answers": ["a lamp", "lamp", "white lamp"]},
    {"question_id": "train-scene0001_00-7", "scene_id": "scene0001_00", "question": "Where is the bed?",
     "answers": ["by the window"]},
]


def test_scanqa_released_training_records_one_per_answer():
    released = scanqa_records(SCANQA_ENTRIES, "train", "x", per_answer=True)
    assert [r["id"] for r in released] == ["scanqa_train-scene0000_00-0_0", "scanqa_train-scene0000_00-0_1",
                                           "scanqa_train-scene0000_00-0_2", "scanqa_train-scene0001_00-7_0"]
    assert [r["conversations"][1]["value"] for r in released] == ["a lamp", "lamp", "white lamp", "by the window"]
    assert [r["conversations"][0]["value"] for r in released] == [
        "<image>\nWhat is on the desk? Answer the question simply."] * 3 + [
        "<image>\nWhere is the bed? Answer the question simply."]
    assert released[1]["answers"] == ["a lamp", "lamp", "white lamp"]
    ours = scanqa_records(SCANQA_ENTRIES, "train", "x")
    assert [(r["id"], r["conversations"][1]["value"]) for r in ours] == [
        ("scanqa-train-scene0000_00-0", "a lamp"), ("scanqa-train-scene0001_00-7", "by the window")]


def _sqa3d_entry(question_id, situation, alternatives, question):
    return {"question_id": question_id, "scene_id": "scene0000_00", "situation": situation,
            "alternative_situation": alternatives, "question": question, "answers": ["left"],
            "answer_type": "other", "position": {"x": 0, "y": 0, "z": 0},
            "rotation": {"_w": 1, "_x": 0, "_y": 0, "_z": 0}}


def test_sqa3d_released_training_records_one_per_situation():
    entries = [_sqa3d_entry(11, "I sit on the bed.", ["I am on the bed.", "Sitting on the bed."], "Which way?"),
               _sqa3d_entry(12, "I face the door.", [], "Is it open?")]
    released = sqa3d_records(entries, "train", "x", per_situation=True)  # 2 + 1 and 0 + 1 situations
    assert [r["id"] for r in released] == ["sqa3d-train-11-0", "sqa3d-train-11-1", "sqa3d-train-11-2",
                                           "sqa3d-train-12-0"]
    tail = " Answer the question using a single word or phrase."
    assert [r["conversations"][0]["value"] for r in released] == [
        "<image>\nI am on the bed. Which way?" + tail, "<image>\nSitting on the bed. Which way?" + tail,
        "<image>\nI sit on the bed. Which way?" + tail, "<image>\nI face the door. Is it open?" + tail]
    assert [r["question_type"] for r in released] == ["which", "which", "which", "is"]
    ours = sqa3d_records(entries, "train", "x")
    assert [r["id"] for r in ours] == ["sqa3d-train-11", "sqa3d-train-12"]
    assert ours[0]["conversations"][0]["value"] == "<image>\nI sit on the bed. Which way?" + tail


def test_scanrefer_unique_multiple_released_rule_on_a_crafted_split():
    """Hand count: scene A annotates chair#0, chair#1, lamp#2 (lamp unmapped -> 39), nightstand#3 (32 -> 39),
    table#4; the unannotated chair#5 and table#6 of A do not count. Scene B annotates one chair#0, twice.
    -> A: chairs multiple (2), lamp + nightstand multiple (both 39), table unique; B: chair unique."""
    ids = {"chair": "5", "table": "7", "nightstand": "39"}
    entries = [{"scene_id": s, "object_id": str(o), "object_name": n} for s, o, n in [
        ("A", 0, "chair"), ("A", 1, "chair"), ("A", 2, "lamp"), ("A", 3, "nightstand"), ("A", 4, "table"),
        ("A", 4, "table"), ("B", 0, "chair"), ("B", 0, "chair")]]
    types = scanrefer_eval_types(entries, lambda name: ids.get(name, "39"))
    assert types == ["multiple", "multiple", "multiple", "multiple", "unique", "unique", "unique", "unique"]
