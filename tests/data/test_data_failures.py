"""Real-data failures (issue 16): invalid frames, deep decoding, EmbodiedScan frame lists, benchmark hygiene."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import pytest

from tests.data.prepared import copy_root, file_digests, prepare
from vega3d.data import safe_pickle
from vega3d.data.check import check_data_root
from vega3d.data.frame_lists import frame_lists_path, scene_frame_list
from vega3d.data.frames import scene_frame_ids
from vega3d.data.layout import SCANQA_FILE, SCANREFER_FILE, DataLayout, video_id
from vega3d.data.prep import PrepError
from vega3d.data.sampling import frame_id_of, sample_frame_ids

INF_POSE = "-inf -inf -inf -inf\n-inf -inf -inf -inf\n-inf -inf -inf -inf\n-inf -inf -inf -inf\n"


@pytest.fixture
def root(raw_root, tmp_path) -> Path:
    return copy_root(raw_root, tmp_path / "data")


def _all_frames(layout: DataLayout) -> list[tuple[str, int]]:
    scenes = sorted(p.name for p in (layout.root / "scannet" / "posed_images").iterdir())
    return [(s, f) for s in scenes for f in scene_frame_ids(layout, s)]


def _scene(layout: DataLayout, split: str = "train") -> str:
    return layout.split_file_path(split).read_text().split()[0]


def test_prep_on_a_root_with_5_percent_inf_poses(root, raw_root):
    """ScanNet's -inf poses: excluded with a report, written to the metadata, never sampled; records intact."""
    layout = DataLayout(root)
    frames = _all_frames(layout)
    bad = frames[7::20]  # every 20th frame: 5% of the root's frames
    assert len(bad) == round(0.05 * len(frames)) == 3
    for scene, frame in bad:
        layout.pose_path(scene, frame).write_text(INF_POSE)
    report = prepare(root)
    excluded = {(scene, frame): reason for scene, by_frame in report.excluded_frames.items()
                for frame, reason in by_frame.items()}
    assert excluded == {key: "pose has -inf/NaN entries" for key in bad}
    lists = json.loads(frame_lists_path(layout).read_text())
    for scene, frame in bad:
        entry = lists[video_id(scene)]
        assert str(frame) in entry["excluded"] and frame not in entry["frames"]
        assert entry["source"] == "embodiedscan"
        assert len(entry["frames"]) == 15
        assert frame not in scene_frame_ids(layout, scene)
        assert frame not in sample_frame_ids(layout, scene, "uniform", 32)
        assert frame not in sample_frame_ids(layout, scene, "max-coverage", 32)
    selections = json.loads(layout.select_frames_path().read_text())
    picked = {(e["video_id"].split("/")[1], frame_id_of(f)) for e in selections for f in e["frame_files"]}
    assert not picked & set(bad)
    assert report.records == prepare(copy_root(raw_root, root.parent / "clean")).records  # every record kept


def test_a_scene_above_the_invalid_frame_threshold_is_refused(root):
    layout = DataLayout(root)
    scene = _scene(layout)
    for frame in scene_frame_ids(layout, scene)[:5]:  # 5 of 16 = 31% > 25%
        layout.pose_path(scene, frame).write_text(INF_POSE)
    (problem,) = check_data_root(root)
    assert problem.path == str(layout.posed_images_dir(scene)) and "5 of 16 frames are invalid (31% > 25%)" in problem.problem
    assert check_data_root(root, max_invalid_ratio=0.4) == []
    with pytest.raises(PrepError, match="scene refused"):
        prepare(root)
    assert not (root / "processed").exists()


def test_frame_list_comes_from_the_embodiedscan_info(root):
    """Frames the info omits are left out (counted); frames it lists but posed_images lacks are an error."""
    layout = DataLayout(root)
    scene = _scene(layout)
    path = layout.embodiedscan_info_path("train")
    infos = safe_pickle.load(path)
    entry = next(e for e in infos["data_list"] if e["sample_idx"] == video_id(scene))
    entry["images"] = entry["images"][1:]  # the info omits frame 0 (as EmbodiedScan omits -inf frames)
    path.write_bytes(pickle.dumps(infos))
    frame_list = scene_frame_list(layout, scene, entry, path)
    assert frame_list.source == "embodiedscan" and frame_list.not_in_info == 1
    assert frame_list.frames == list(range(10, 160, 10))
    assert check_data_root(root) == []
    for suffix in ("jpg", "png", "txt"):
        (layout.posed_images_dir(scene) / f"00150.{suffix}").unlink()
    (problem,) = check_data_root(root)
    assert problem.path == str(layout.posed_images_dir(scene))
    assert "EmbodiedScan info lists 1 frame(s) that posed_images lacks (first: [150])" in problem.problem


def test_deep_check_decodes_every_frame(root, caplog):
    """A truncated JPEG and a PNG with a corrupt body pass the header check; --deep finds both."""
    layout = DataLayout(root)
    scene = _scene(layout, "val")
    jpg = layout.color_path(scene, 20)
    jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    png = layout.depth_path(scene, 90)
    data = bytearray(png.read_bytes())
    start = data.index(b"IDAT") + 8
    data[start:start + 40] = bytes(40)
    png.write_bytes(bytes(data))
    shallow: dict = {}
    assert check_data_root(root, frame_lists=shallow) == []
    assert shallow[scene].excluded == {}
    deep: dict = {}
    with caplog.at_level(logging.INFO, logger="vega3d.progress"):  # off a terminal the bar is a log line
        assert check_data_root(root, deep=True, progress=True, frame_lists=deep) == []
    assert set(deep[scene].excluded) == {20, 90}
    assert deep[scene].excluded[20].startswith("undecodable jpg") and deep[scene].excluded[90].startswith("undecodable png")
    assert any(r.name == "vega3d.progress" and r.getMessage().startswith("decode frames: ") for r in caplog.records)
    (problem,) = check_data_root(root, deep=True, max_invalid_ratio=0.1)
    assert "2 of 16 frames are invalid" in problem.problem


def _edit(path: Path, change) -> None:
    entries = json.loads(path.read_text())
    change(entries)
    path.write_text(json.dumps(entries))


def test_records_on_a_scene_in_no_split_list(root):
    layout = DataLayout(root)
    scene = _scene(layout)
    extra = "scene0500_00"  # on disk, listed nowhere
    for folder in (layout.posed_images_dir(scene), layout.scan_dir(scene)):
        copy_root(folder, folder.parent / extra)
    path = layout.benchmark_path(SCANQA_FILE, "train")
    _edit(path, lambda e: e.append({**e[0], "question_id": "x-1", "scene_id": extra}))
    (problem,) = check_data_root(root)
    assert problem.path == str(path) and f"scene {extra} is in no split list" in problem.problem


def test_split_leakage_duplicate_ids_invalid_unicode_and_empty_val(root):
    layout = DataLayout(root)
    train_scene = _scene(layout)
    scanqa_val = layout.benchmark_path(SCANQA_FILE, "val")
    _edit(scanqa_val, lambda e: e.append({**e[0], "question_id": "leak-1", "scene_id": train_scene}))
    scanqa_train = layout.benchmark_path(SCANQA_FILE, "train")
    _edit(scanqa_train, lambda e: e.append(dict(e[0])))
    scanrefer = layout.benchmark_path(SCANREFER_FILE, "train")
    scanrefer.write_text(scanrefer.read_text().replace('"description": "', '"description": "\\ud800', 1))
    problems = {(p.path, p.problem.split(":")[0]) for p in check_data_root(root)}
    assert (str(scanqa_val), "record 10") in problems  # the leaking record
    leak = [p for p in check_data_root(root) if "leakage" in p.problem]
    assert len(leak) == 1 and train_scene in leak[0].problem
    dup = [p for p in check_data_root(root) if "repeats the id" in p.problem]
    assert len(dup) == 1 and dup[0].path == str(scanqa_train)
    bad_text = [p for p in check_data_root(root) if "invalid Unicode" in p.problem]
    assert len(bad_text) == 1 and bad_text[0].path == str(scanrefer)
    _edit(scanqa_val, lambda e: e.clear())
    empty = [p for p in check_data_root(root) if "no scanqa val records" in p.problem]
    assert len(empty) == 1 and empty[0].path == str(scanqa_val)
    before = file_digests(root / "metadata")
    with pytest.raises(PrepError):
        prepare(root)
    assert file_digests(root / "metadata") == before


def test_prep_excludes_a_truncated_frame_instead_of_crashing(root):
    """Prep reads frames for the coverage picks: its check decodes every frame, so a truncated JPEG (which passes
    the header-only check) is an excluded frame, not a crash half-way through prep."""
    layout = DataLayout(root)
    scene = _scene(layout, "val")
    jpg = layout.color_path(scene, 0)  # frame 0 is always a coverage candidate
    jpg.write_bytes(jpg.read_bytes()[: len(jpg.read_bytes()) // 2])
    assert check_data_root(root) == []  # headers only: the default check cannot see it
    report = prepare(root)
    assert list(report.excluded_frames) == [scene] and report.excluded_frames[scene][0].startswith("undecodable jpg")
    assert 0 not in json.loads(frame_lists_path(layout).read_text())[video_id(scene)]["frames"]
