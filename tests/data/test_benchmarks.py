"""Raw benchmark files: every description/answer recomputed from the generator's truth, formats, readers."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.data import truth_answers as ta
from vega3d.config import SyntheticConfig
from vega3d.data.benchmark_formats import (
    BenchmarkFormatError,
    read_multi3drefer,
    read_scanqa,
    read_scanrefer,
    read_sqa3d,
)
from vega3d.data.layout import (
    MULTI3DREFER_FILE,
    SCANQA_FILE,
    SCANREFER_FILE,
    SQA3D_ANNOTATIONS_FILE,
    SQA3D_QUESTIONS_FILE,
    DataLayout,
)
from vega3d.testing.synthetic import scene_names, scene_truth
from vega3d.testing.synthetic_benchmarks import generate_benchmarks, write_benchmarks


@pytest.fixture(scope="module")
def truths():
    cfg = SyntheticConfig()  # the default 8 / 3 / 2 scenes
    return [scene_truth(scene, split, 0, cfg) for split, names in scene_names(cfg).items() for scene in names]


@pytest.fixture(scope="module")
def files(truths):
    return generate_benchmarks(truths, seed=0)


def _by_scene(truths):
    return {t.scene: t for t in truths}


@pytest.mark.parametrize("split", ["train", "val"])
def test_scanrefer_descriptions_identify_their_target(truths, files, split):
    scenes, colours = _by_scene(truths), ta.colours(truths)
    entries = files[SCANREFER_FILE.format(split=split)]
    assert entries
    for entry in entries:
        truth = scenes[entry["scene_id"]]
        assert truth.split == split
        target = truth.objects[int(entry["object_id"])]
        assert entry["object_name"] == target.label.replace(" ", "_")
        phrase = ta.referring_phrase(entry["description"])
        assert ta.resolve_phrase(truth, phrase, colours) == {target.object_id}, entry
        if "next to the " in entry["description"]:
            near = entry["description"].split("next to the ")[1].rstrip(".")
            assert near == ta.nearest_other(truth, target).label, entry
        if " is " + target.color not in entry["description"]:
            assert all(f" is {c}." not in entry["description"] for c in colours), entry
        assert entry["token"] == entry["description"].replace(".", " .").split()


def test_scanrefer_covers_unique_and_multiple_targets(truths, files):
    scenes = _by_scene(truths)
    kinds = Counter()
    for entry in files[SCANREFER_FILE.format(split="train")]:
        truth = scenes[entry["scene_id"]]
        target = truth.objects[int(entry["object_id"])]
        kinds["unique" if len(ta.with_label(truth, target.label)) == 1 else "multiple"] += 1
    assert kinds["unique"] > 0 and kinds["multiple"] > 0


@pytest.mark.parametrize("split", ["train", "val"])
def test_multi3drefer_targets_and_eval_types_follow_the_truth(truths, files, split):
    scenes, colours = _by_scene(truths), ta.colours(truths)
    entries = files[MULTI3DREFER_FILE.format(split=split)]
    for entry in entries:
        truth = scenes[entry["scene_id"]]
        description = entry["description"].rstrip(".")
        for prefix in ("look for ", "find "):
            description = description.removeprefix(prefix)
        phrase = description.removesuffix(" in the room")
        targets = ta.resolve_phrase(truth, phrase, colours)
        assert set(entry["object_ids"]) == targets, entry
        head = phrase.split(" closest")[0].split(" farthest")[0].split()[-1]
        same_class = len(ta.with_label(truth, ta.vocabulary(truth)[head]))
        expected = {0: "zt", 1: "st"}.get(len(targets), "mt")
        if expected != "mt":
            expected += "_w_d" if same_class > len(targets) else "_wo_d"
        assert entry["eval_type"] == expected, entry
    if split == "train":
        assert {e["eval_type"] for e in entries} == {"zt_w_d", "zt_wo_d", "st_w_d", "st_wo_d", "mt"}


@pytest.mark.parametrize("split", ["train", "val"])
def test_scanqa_answers_follow_the_truth(truths, files, split):
    scenes = _by_scene(truths)
    entries = files[SCANQA_FILE.format(split=split)]
    assert entries
    for entry in entries:
        truth = scenes[entry["scene_id"]]
        assert entry["answers"][0] == ta.scanqa_answer(truth, entry["question"]), entry
        assert entry["object_names"] == [truth.objects[i].label for i in entry["object_ids"]]
    assert len({e["question_id"] for e in entries}) == len(entries)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_sqa3d_answers_follow_situation_and_truth(truths, files, split):
    scenes = _by_scene(truths)
    questions = files[SQA3D_QUESTIONS_FILE.format(split=split)]["questions"]
    annotations = {a["question_id"]: a for a in files[SQA3D_ANNOTATIONS_FILE.format(split=split)]["annotations"]}
    assert questions and len(annotations) == len(questions)
    for question in questions:
        truth = scenes[question["scene_id"]]
        assert truth.split == split
        annotation = annotations[question["question_id"]]
        assert len(question["alternative_situation"]) >= 2
        assert question["situation"] not in question["alternative_situation"]
        expected = ta.sqa3d_answer(truth, question["situation"], question["question"],
                                   annotation["position"], annotation["rotation"])
        assert annotation["answers"][0]["answer"] == expected, (question, annotation)
        rotation = annotation["rotation"]
        assert rotation["_w"] ** 2 + rotation["_z"] ** 2 == pytest.approx(1.0)


def test_sqa3d_has_every_question_type(files):
    from vega3d.data.records import sqa3d_question_type

    questions = files[SQA3D_QUESTIONS_FILE.format(split="train")]["questions"]
    assert {sqa3d_question_type(q["question"]) for q in questions} == {"what", "is", "how", "can", "which", "others"}


def test_sizes_fit_the_cpu_demo_and_language_varies(files):
    for template in (SCANREFER_FILE, MULTI3DREFER_FILE, SCANQA_FILE):
        assert 30 <= len(files[template.format(split="train")]) <= 400
    assert 30 <= len(files[SQA3D_QUESTIONS_FILE.format(split="train")]["questions"]) <= 400
    openings = {e["description"].split()[0] for e in files[SCANREFER_FILE.format(split="train")]}
    assert len(openings) >= 3
    questions = {q["question"].split(" the ")[0] for q in files[SCANQA_FILE.format(split="train")]}
    assert len(questions) >= 4


def test_generation_is_deterministic_by_seed(truths, files):
    assert generate_benchmarks(truths, seed=0) == files
    assert generate_benchmarks(truths, seed=1) != files


def test_written_files_read_back_with_the_readers(tmp_path, truths, files):
    written = write_benchmarks(tmp_path, truths, seed=0)
    assert len(written) == len(files) == 12
    layout = DataLayout(tmp_path)
    for split in ("train", "val"):
        assert read_scanrefer(layout.benchmark_path(SCANREFER_FILE, split)) == files[SCANREFER_FILE.format(split=split)]
        assert read_multi3drefer(layout.benchmark_path(MULTI3DREFER_FILE, split)) == files[
            MULTI3DREFER_FILE.format(split=split)]
        assert read_scanqa(layout.benchmark_path(SCANQA_FILE, split)) == files[SCANQA_FILE.format(split=split)]
    joined = read_sqa3d(layout.benchmark_path(SQA3D_QUESTIONS_FILE, "test"),
                        layout.benchmark_path(SQA3D_ANNOTATIONS_FILE, "test"))
    annotations = files[SQA3D_ANNOTATIONS_FILE.format(split="test")]["annotations"]
    assert [j["answers"] for j in joined] == [[a["answers"][0]["answer"]] for a in annotations]
    assert not list(tmp_path.rglob(".*.tmp-*"))


def test_reader_names_file_record_and_field(tmp_path, files):
    entries = [dict(e) for e in files[SCANREFER_FILE.format(split="val")]]
    entries[3]["object_id"] = 7  # an int, the public format has a string
    path = tmp_path / "ScanRefer_filtered_val.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(BenchmarkFormatError) as error:
        read_scanrefer(path)
    message = str(error.value)
    assert str(path) in message and "record 3" in message and "'object_id'" in message
    assert entries[3]["scene_id"] in message


def test_sqa3d_reader_refuses_a_question_without_annotation(tmp_path, files):
    questions = files[SQA3D_QUESTIONS_FILE.format(split="val")]
    annotations = {"annotations": files[SQA3D_ANNOTATIONS_FILE.format(split="val")]["annotations"][1:]}
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "a.json").write_text(json.dumps(annotations))
    with pytest.raises(BenchmarkFormatError, match=r"q\.json: record 0 .*has no annotation"):
        read_sqa3d(tmp_path / "q.json", tmp_path / "a.json")


def test_reader_names_a_missing_or_broken_file(tmp_path):
    with pytest.raises(BenchmarkFormatError, match="file missing"):
        read_scanqa(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(BenchmarkFormatError, match=r"bad\.json: not valid JSON"):
        read_multi3drefer(tmp_path / "bad.json")
