"""The prep stage on a small synthetic root: outputs checked against the generator's truth."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from tests.data import truth_answers as ta
from tests.data.prepared import copy_root, file_digests, prepare
from vega3d.config import load_config
from vega3d.data import safe_pickle
from vega3d.data.boxes import box_iou_matrix
from vega3d.data.geometry import voxel_set
from vega3d.data.layout import DataLayout, video_id
from vega3d.data.prep import PrepError, run_prep
from vega3d.testing.synthetic import load_truth

# Mesh vertices are stored as float32 in the raw scan frame; moving them back into the aligned frame
# reproduces the true box faces up to float32 rounding of coordinates of a few metres (at most 6.4e-7 m
# measured over the default 13 scenes).
MESH_TOLERANCE = 2e-6
TASK_FILES = {"scanrefer": ("train", "val"), "multi3drefer": ("train", "val"), "scan2cap": ("train", "val"),
              "scanqa": ("train", "val"), "sqa3d": ("train", "val", "test")}


def _fold(nyu40_id: int) -> int:
    return nyu40_id if nyu40_id in {*range(1, 13), 14, 16, 24, 28, 33, 34, 36, 39} else 39


@pytest.fixture(scope="module")
def prepared(raw_root, tmp_path_factory):
    root = copy_root(raw_root, tmp_path_factory.mktemp("prepared") / "data")
    return root, prepare(root)


@pytest.fixture(scope="module")
def truths(raw_root):
    return {t.scene: t for t in load_truth(raw_root)}


def test_gt_boxes_equal_the_generator_boxes(prepared, truths):
    root, report = prepared
    layout = DataLayout(root)
    for split in ("train", "val", "test"):
        boxes = json.loads(layout.gt_box_path(split).read_text())
        assert sorted(boxes) == sorted(video_id(s) for s in report.scenes[split])
        for scene in report.scenes[split]:
            expected = np.array([o.box for o in truths[scene].objects])  # index = objectId
            np.testing.assert_allclose(np.array(boxes[video_id(scene)]), expected, atol=MESH_TOLERANCE)


def test_pred_boxes_cover_the_objects(prepared, truths):
    root, report = prepared
    layout = DataLayout(root)
    assert not layout.pred_box_path("train").exists()
    for split in ("val", "test"):
        predicted = json.loads(layout.pred_box_path(split).read_text())
        for scene in report.scenes[split]:
            boxes = np.array(predicted[video_id(scene)])
            truth = np.array([o.box for o in truths[scene].objects])
            assert len(truth) + 2 <= len(boxes) <= min(50, len(truth) + 3)  # jittered copies + 2-3 spurious
            assert (box_iou_matrix(truth, boxes).max(axis=1) > 0.25).all()  # thin objects + an 8 cm fringe


def test_aligned_points_carry_instance_ids(prepared, truths):
    root, report = prepared
    layout = DataLayout(root)
    scene = report.scenes["train"][0]
    points = np.load(layout.aligned_points_path(scene))
    xyz, instance = points["xyz"], points["instance"]
    assert xyz.dtype == np.float32 and xyz.shape == (len(instance), 3) and points["rgb"].shape == xyz.shape
    for obj in truths[scene].objects:
        members = xyz[instance == obj.object_id]
        box = np.asarray(obj.box)
        assert len(members) > 0
        assert (np.abs(members - box[:3]) <= box[3:] / 2 + MESH_TOLERANCE).all()
        assert (members.astype(np.float64)[:, 2].min()) == pytest.approx(box[2] - box[5] / 2, abs=MESH_TOLERANCE)
    assert (instance == -1).sum() > 0  # floor and walls


def test_voxel_sets_and_frame_selections(prepared):
    root, report = prepared
    layout = DataLayout(root)
    voxels = safe_pickle.load(layout.voxel_path())
    selections = {e["video_id"]: e for e in json.loads(layout.select_frames_path().read_text())}
    scenes = [s for names in report.scenes.values() for s in names]
    assert sorted(voxels) == sorted(scenes) and sorted(selections) == sorted(video_id(s) for s in scenes)
    for scene in scenes:
        points = np.load(layout.aligned_points_path(scene))["xyz"]
        np.testing.assert_array_equal(voxels[scene], voxel_set(points, 0.1))
        entry = selections[video_id(scene)]
        gains = entry["voxel_nums"]
        assert gains == sorted(gains, reverse=True) and gains[0] > 0  # greedy gains never grow
        assert sum(gains) == entry["num_select_voxels"] <= entry["num_all_voxels"] <= len(voxels[scene])
        assert len(entry["frame_files"]) == len(set(entry["frame_files"])) == min(32, 16)
        assert all((root / f).is_file() for f in entry["frame_files"])


def _records(root: Path, task: str, split: str) -> list[dict]:
    return json.loads(DataLayout(root).processed_path(task, split).read_text())


def test_every_record_parses_references_a_scene_and_agrees_with_the_truth(prepared, truths):
    root, report = prepared
    layout = DataLayout(root)
    colours = ta.colours(list(truths.values()))
    checked = 0
    for task, splits in TASK_FILES.items():
        for split in splits:
            records = _records(root, task, split)
            assert records and report.records[f"{task}_{split}"] == len(records)
            assert len({r["id"] for r in records}) == len(records)
            for record in records:
                scene = record["scene_id"]
                truth = truths[scene]
                assert truth.split == split and record["video"] == video_id(scene) and record["task"] == task
                assert layout.posed_images_dir(scene).is_dir()
                human, answer = (turn["value"] for turn in record["conversations"])
                assert human.startswith("<image>\n")
                if task == "scanrefer":
                    target = truth.objects[record["target_id"]]
                    description = human.split("\n")[2]
                    assert ta.resolve_phrase(truth, ta.referring_phrase(description), colours) == {target.object_id}
                    np.testing.assert_allclose(record["box"], target.box, atol=MESH_TOLERANCE)
                    # released rule: annotated objects of this split file, NYU40 ids outside the kept set -> 39
                    annotated = {r["target_id"] for r in records if r["scene_id"] == scene}
                    same = sum(_fold(truth.objects[i].nyu40_id) == _fold(target.nyu40_id) for i in annotated)
                    assert record["eval_type"] == ("unique" if same == 1 else "multiple")
                    assert answer == "<ground>"
                elif task == "multi3drefer":
                    phrase = human.split("\n")[2].rstrip(".").removeprefix("look for ").removeprefix("find ")
                    targets = ta.resolve_phrase(truth, phrase.removesuffix(" in the room"), colours)
                    assert set(record["target_ids"]) == targets
                    np.testing.assert_allclose(np.array(record["boxes"]).reshape(-1, 6),
                                               np.array([truth.objects[i].box for i in record["target_ids"]]).reshape(-1, 6),
                                               atol=MESH_TOLERANCE)
                elif task == "scan2cap":
                    target = truth.objects[record["object_id"]]
                    np.testing.assert_allclose(record["box"], target.box, atol=MESH_TOLERANCE)
                    assert answer in record["references"]
                    for reference in record["references"]:
                        assert ta.resolve_phrase(truth, ta.referring_phrase(reference), colours) == {target.object_id}
                elif task == "scanqa":
                    assert answer == record["answers"][0] == ta.scanqa_answer(truth, human.split("\n")[1].removesuffix(
                        " Answer the question simply."))
                else:
                    question = human.removeprefix(f"<image>\n{record['situation']} ").removesuffix(
                        " Answer the question using a single word or phrase.")
                    metadata = record["metadata"]
                    assert answer == ta.sqa3d_answer(truth, record["situation"], question, metadata["position"],
                                                     metadata["rotation"])
                checked += 1
    assert checked == sum(report.records.values())


def test_scan2cap_val_has_one_record_per_described_object(prepared):
    root, _ = prepared
    scanrefer = _records(root, "scanrefer", "val")
    scan2cap = _records(root, "scan2cap", "val")
    assert sorted((r["scene_id"], r["object_id"]) for r in scan2cap) == sorted(
        {(r["scene_id"], r["target_id"]) for r in scanrefer})


def test_paper_preset_prepares_the_released_training_records(prepared, raw_root, tmp_path):
    """Released: ScanQA train one record per answer, SQA3D train one per situation (alternatives + main);
    val/test and every other task as with one record per question (the tiny/improved setting)."""
    root, improved = prepared
    paper = run_prep(copy_root(raw_root, tmp_path / "data"), load_config("paper").data, progress=False)
    raw = raw_root / "benchmark"
    scanqa = json.loads((raw / "scanqa" / "ScanQA_v1.0_train.json").read_text())
    sqa = json.loads((raw / "sqa_task" / "balanced" / "v1_balanced_questions_train_scannetv2.json").read_text())
    answers = sum(len(q["answers"]) for q in scanqa)
    situations = sum(len(q["alternative_situation"]) + 1 for q in sqa["questions"])
    assert answers > len(scanqa) and situations > len(sqa["questions"])  # the files exercise both rules
    assert improved.records["scanqa_train"] == len(scanqa) and improved.records["sqa3d_train"] == len(sqa["questions"])
    assert paper.records == {**improved.records, "scanqa_train": answers, "sqa3d_train": situations}


def test_prep_is_idempotent(prepared, tmp_path):
    root, _ = prepared
    before = {**file_digests(root / "metadata"), **file_digests(root / "processed")}
    prepare(root)
    assert {**file_digests(root / "metadata"), **file_digests(root / "processed")} == before
    assert not list(root.rglob(".*.tmp-*"))


def _missing_frame(layout: DataLayout, scene: str) -> Path:
    path = layout.depth_path(scene, 20)
    path.unlink()
    return path


def _corrupt_mesh(layout: DataLayout, scene: str) -> Path:
    path = layout.mesh_path(scene)
    path.write_bytes(path.read_bytes()[:400])  # header + a few vertices: a truncated download
    return path


def _vertex_count_mismatch(layout: DataLayout, scene: str) -> Path:
    path = layout.segs_path(scene)
    segs = json.loads(path.read_text())
    segs["segIndices"] = segs["segIndices"][:-5]
    path.write_text(json.dumps(segs))
    return path


def _object_without_vertices(layout: DataLayout, scene: str) -> Path:
    path = layout.aggregation_path(scene)
    aggregation = json.loads(path.read_text())
    aggregation["segGroups"][-1]["segments"] = [10**9]
    path.write_text(json.dumps(aggregation))
    return path


def _corrupt_mask(layout: DataLayout, scene: str) -> Path:
    val_scene = layout.split_file_path("val").read_text().split()[0]
    path = layout.mask_path(val_scene)
    path.write_bytes(b"PK\x03\x04 this zip is broken")
    return path


def _mask_vertex_mismatch(layout: DataLayout, scene: str) -> Path:
    import scipy.sparse as sp

    val_scene = layout.split_file_path("val").read_text().split()[0]
    path = layout.mask_path(val_scene)
    masks = sp.load_npz(str(path)).tocsr()
    with path.open("wb") as handle:
        sp.save_npz(handle, masks[:, :-3])
    return path


def _info_with_a_non_dict_entry(layout: DataLayout, scene: str) -> Path:
    path = layout.embodiedscan_info_path("val")
    infos = safe_pickle.load(path)
    infos["data_list"].append(["not", "a", "dict"])
    path.write_bytes(pickle.dumps(infos))
    return path


def _scene_not_on_disk(layout: DataLayout, scene: str) -> Path:
    path = layout.root / "benchmark/scanqa/ScanQA_v1.0_train.json"
    entries = json.loads(path.read_text())
    entries.append({**entries[0], "question_id": "train-scene0999_00-0", "scene_id": "scene0999_00"})
    path.write_text(json.dumps(entries))
    return path


def _wrong_box_count(layout: DataLayout, scene: str) -> Path:
    path = layout.gt_box_path("train")
    boxes = json.loads(path.read_text())
    boxes[video_id(scene)] = boxes[video_id(scene)][:-1]
    path.write_text(json.dumps(boxes))
    return path


class _Evil:
    def __reduce__(self):
        import os

        return os.system, ("echo pwned",)


def _malicious_pickle(layout: DataLayout, scene: str) -> Path:
    path = layout.embodiedscan_info_path("train")
    path.write_bytes(pickle.dumps({"metainfo": {}, "data_list": [_Evil()]}))
    return path


@pytest.mark.parametrize("corrupt", [_missing_frame, _scene_not_on_disk, _wrong_box_count, _malicious_pickle,
                                     _corrupt_mesh, _vertex_count_mismatch, _object_without_vertices, _corrupt_mask,
                                     _mask_vertex_mismatch, _info_with_a_non_dict_entry])
def test_bad_input_gives_one_error_naming_the_file_and_prep_writes_nothing(prepared, tmp_path, corrupt):
    from vega3d.data.check import check_data_root

    root = copy_root(prepared[0], tmp_path / "data")
    layout = DataLayout(root)
    scene = sorted(layout.split_file_path("train").read_text().split())[0]
    bad_file = corrupt(layout, scene)
    problems = check_data_root(root)
    assert len(problems) == 1, problems
    assert problems[0].path == str(bad_file) and problems[0].fix
    before = {**file_digests(root / "processed"), **file_digests(root / "metadata")}
    with pytest.raises(PrepError) as error:
        prepare(root)
    assert str(bad_file) in str(error.value)
    assert {**file_digests(root / "processed"), **file_digests(root / "metadata")} == before
    assert not list(root.rglob(".*.tmp-*"))


def test_failure_inside_prep_leaves_processed_untouched(raw_root, tmp_path):
    """A defect only prep sees (an object owning no mesh vertex) stops it before metadata/ and processed/."""
    root = copy_root(raw_root, tmp_path / "data")
    layout = DataLayout(root)
    scene = layout.split_file_path("val").read_text().split()[0]
    path = layout.aggregation_path(scene)
    aggregation = json.loads(path.read_text())
    aggregation["segGroups"][-1]["segments"] = [10**9]
    path.write_text(json.dumps(aggregation))
    with pytest.raises(Exception, match=str(path)):
        prepare(root)
    assert not (root / "processed").exists()
    assert not layout.gt_box_path("train").exists() and not layout.voxel_path().exists()
    assert not list(root.rglob(".*.tmp-*"))


def test_label_classes_from_the_scannet_label_table(tmp_path):
    from vega3d.data.errors import DataFileError
    from vega3d.data.prep import label_classes

    layout = DataLayout(tmp_path)
    assert label_classes(layout)("office_chair") == "office chair"  # no table: the name itself
    layout.label_map_path().parent.mkdir(parents=True)
    layout.label_map_path().write_text("id\traw_category\tcategory\tnyu40id\tnyu40class\n"
                                       "1\toffice chair\tchair\t5\tchair\n2\tnightstand\tnightstand\t32\tnightstand\n"
                                       "3\tshower curtain\tcurtain\t28\tshower curtain\n")
    to_class = label_classes(layout)
    # "_" -> " "; 32 is outside the kept classes -> 39; an unmapped name -> 39
    assert [to_class(x) for x in ("office_chair", "nightstand", "shower_curtain", "lamp")] == ["5", "39", "28", "39"]
    layout.label_map_path().write_text("a\tb\n1\t2\n")
    with pytest.raises(DataFileError, match="raw_category and nyu40id"):
        label_classes(layout)
