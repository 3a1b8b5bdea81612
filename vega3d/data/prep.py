"""The prep stage: from the raw layout to everything training and evaluation read.

``run_prep(root, cfg)`` first runs ``check_data_root`` (which reads every input the way prep does) and refuses
a root with problems, writing nothing. Each scene's frame list follows the invalid-frame policy of
:mod:`vega3d.data.frame_lists` (excluded frames reported and written to ``metadata/scannet_frame_lists.json``).
Then, per scene:
the mesh vertices moved into the aligned frame by ``axisAlignment`` with per-vertex instance ids (segments +
aggregation) -> ``scannet/pcd_with_global_alignment/<scene>.npz``; a ground-truth box per aggregation object
(index = objectId); a box per predicted mask (at most 50, in the mask file's order); the scene's voxel set;
and the max-coverage ordering of its candidate frames (back-projected depth, invalid depth masked unless
``mask_invalid_depth`` is False). Finally
the metadata files and the processed llava-style records of every task are built in memory and only then
written, each atomically, so a failure leaves no partial file in ``metadata/`` or ``processed/``; point
clouds go to a staging folder first and are moved in place only after every scene went through. Re-running
on the same root rewrites identical files and reuses the coverage picks of every scene whose frame list and
voxel set are unchanged. Derived files are keyed by the settings that made them (voxel size and number of
picks in their names, see ``DataLayout.select_frames_path``), so runs with different settings on one data root
never overwrite each other; the coverage ratio (mc-ratio95) is applied when sampling, to the stored gains.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vega3d import storage
from vega3d.config import DataConfig
from vega3d.data.benchmark_formats import read_multi3drefer, read_scanqa, read_scanrefer, read_sqa3d
from vega3d.data.check import Problem, check_data_root, format_problems, read_split_scenes
from vega3d.data.errors import DataFileError
from vega3d.data.frame_lists import DEFAULT_MAX_INVALID_RATIO, FrameList, frame_lists_path
from vega3d.data.geometry import voxel_set
from vega3d.data.layout import (
    MULTI3DREFER_FILE,
    SCANQA_FILE,
    SCANREFER_FILE,
    SQA3D_ANNOTATIONS_FILE,
    SQA3D_QUESTIONS_FILE,
    DataLayout,
    video_id,
)
from vega3d.data.records import (
    SceneObjects,
    multi3drefer_records,
    scan2cap_records,
    scanqa_records,
    scanrefer_records,
    sqa3d_records,
)
from vega3d.data.sampling import coverage_selection, selection_budget
from vega3d.data.scene_points import ScenePoints, aligned_scene_points, gt_boxes, predicted_boxes

logger = logging.getLogger(__name__)

TASK_SPLITS = {"scanrefer": ("train", "val"), "multi3drefer": ("train", "val"), "scan2cap": ("train", "val"),
               "scanqa": ("train", "val"), "sqa3d": ("train", "val", "test")}


class PrepError(RuntimeError):
    """The data root has problems; nothing was written. ``problems`` lists them with their fixes."""

    def __init__(self, root: str | Path, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(f"data root {root} has {len(problems)} problem(s); prep wrote nothing. Fix them "
                         f"(`vega3d data check` shows the same list):\n{format_problems(problems)}")


@dataclass
class PrepReport:
    """What a prep run produced."""

    root: str
    scenes: dict[str, list[str]]  # split -> scenes
    outputs: list[str] = field(default_factory=list)  # files written
    records: dict[str, int] = field(default_factory=dict)  # "<task>_<split>" -> number of records
    excluded_frames: dict[str, dict[int, str]] = field(default_factory=dict)  # scene -> frame -> reason
    reused_selections: int = 0  # scenes whose coverage picks an earlier prep with the same settings made
    seconds: float = 0.0


def write_scene_points(path: str | Path, points: ScenePoints) -> None:
    """Atomic ``.npz`` with xyz [N,3] float32, rgb [N,3] uint8, instance [N] int64."""
    with storage.atomic_local_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, xyz=points.xyz, rgb=points.rgb, instance=points.instance)


def _selection_digest(frames: list[int], voxels: np.ndarray) -> str:
    """What a scene's coverage picks depend on besides the settings: its frame list and its voxel set."""
    digest = hashlib.sha256(json.dumps(frames).encode())
    digest.update(np.ascontiguousarray(voxels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def _previous_selections(path: Path) -> dict[str, dict]:
    """Entries of an earlier prep with the same settings (same file), by video_id; {} when unusable."""
    try:
        return {entry["video_id"]: entry for entry in json.loads(path.read_text()) if "inputs" in entry}
    except (OSError, ValueError, TypeError, KeyError):
        return {}


def _pickle_bytes(obj: Any) -> bytes:
    """Pickle of plain containers + numpy arrays (what the restricted loader accepts)."""
    return pickle.dumps(obj, protocol=4)


def _build_records(layout: DataLayout, cfg: DataConfig, objects: dict[str, SceneObjects],
                   to_class: Callable[[str], str]) -> dict[tuple[str, str], list]:
    """Every processed record list, keyed by (task, split); raises before anything is written.

    Train splits of ScanQA / SQA3D follow ``cfg.scanqa_train_records`` / ``cfg.sqa3d_train_records``.
    """
    built: dict[tuple[str, str], list] = {}
    for task in cfg.tasks:
        for split in TASK_SPLITS[task]:
            if task in ("scanrefer", "scan2cap"):
                path = layout.benchmark_path(SCANREFER_FILE, split)
                entries = read_scanrefer(path)
                if task == "scanrefer":
                    records = scanrefer_records(entries, split, objects, str(path), to_class)
                else:
                    records = scan2cap_records(entries, split, objects, str(path), per_object=split != "train")
            elif task == "multi3drefer":
                path = layout.benchmark_path(MULTI3DREFER_FILE, split)
                records = multi3drefer_records(read_multi3drefer(path), split, objects, str(path))
            elif task == "scanqa":
                path = layout.benchmark_path(SCANQA_FILE, split)
                records = scanqa_records(read_scanqa(path), split, str(path),
                                         per_answer=split == "train" and cfg.scanqa_train_records == "per_answer")
            else:
                questions = layout.benchmark_path(SQA3D_QUESTIONS_FILE, split)
                entries = read_sqa3d(questions, layout.benchmark_path(SQA3D_ANNOTATIONS_FILE, split))
                records = sqa3d_records(entries, split, str(questions),
                                        per_situation=split == "train" and cfg.sqa3d_train_records == "per_situation")
            built[(task, split)] = records
    return built


SCANREFER_KEPT_CLASSES = frozenset([*range(1, 13), 14, 16, 24, 28, 33, 34, 36, 39])
OTHER_CLASS = "39"


def label_classes(layout: DataLayout) -> Callable[[str], str]:
    """ScanRefer object_name -> class for unique/multiple, by the released rule (SPEC.md Parity 4).

    "_" -> " ", then ScanNet's ``scannetv2-labels.combined.tsv`` raw_category -> nyu40id; an id outside
    {1-12, 14, 16, 24, 28, 33, 34, 36, 39} or a name the table lacks becomes 39. A root without the table
    (not part of the downloaded layout everywhere) uses the name itself as its class.
    """
    path = layout.label_map_path()
    if not path.is_file():
        return lambda name: name.replace("_", " ")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if not {"raw_category", "nyu40id"} <= set(reader.fieldnames or ()):
            raise DataFileError(path, "needs the columns raw_category and nyu40id",
                                "use ScanNet's scannetv2-labels.combined.tsv or remove the file")
        mapping = {row["raw_category"]: row["nyu40id"] for row in reader}

    def to_class(name: str) -> str:
        nyu40 = mapping.get(name.replace("_", " "), OTHER_CLASS)
        return nyu40 if nyu40.isdigit() and int(nyu40) in SCANREFER_KEPT_CLASSES else OTHER_CLASS

    return to_class


def run_prep(root: str | Path, cfg: DataConfig, progress: bool = True,
             max_invalid_ratio: float = DEFAULT_MAX_INVALID_RATIO) -> PrepReport:
    """Prepare a data root (see the module docstring). Raises PrepError, writing nothing, when check fails.

    The check runs deep (every frame decoded): prep reads frames itself, and a truncated image must be an
    excluded frame, not a crash half-way. Invalid frames (-inf/NaN poses, undecodable images) are left out of
    the frame lists and reported; a scene with more than ``max_invalid_ratio`` of them is refused.
    """
    started = time.perf_counter()
    layout = DataLayout(root)
    frame_lists: dict[str, FrameList] = {}
    problems = check_data_root(layout.root, progress=progress, deep=True,
                               max_invalid_ratio=max_invalid_ratio, frame_lists=frame_lists)
    if problems:
        raise PrepError(layout.root, problems)
    scenes = {split: read_split_scenes(layout, split) for split in ("train", "val", "test")}
    report = PrepReport(root=str(layout.root), scenes=scenes)
    all_scenes = [(split, scene) for split, names in scenes.items() for scene in names]
    report.excluded_frames = {scene: fl.excluded for scene, fl in frame_lists.items() if fl.excluded}
    staging = Path(tempfile.mkdtemp(prefix=".prep-staging-", dir=layout.root))
    try:
        outputs = _prepare_scenes(layout, cfg, all_scenes, frame_lists, staging, progress)
        report.reused_selections = outputs.reused_selections
        for (task, split), task_records in outputs.records.items():
            report.records[f"{task}_{split}"] = len(task_records)
        for name in sorted(p.name for p in staging.iterdir()):  # every scene went through: publish
            target = layout.aligned_points_path(name.removesuffix(".npz"))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
            report.outputs.append(str(target))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for path, payload in outputs.files:
        storage.write_bytes(str(path), payload)
        report.outputs.append(str(path))
    report.seconds = time.perf_counter() - started
    logger.info("prep of %s done in %.1f s: %s; %d invalid frames excluded", layout.root, report.seconds,
                report.records, sum(len(v) for v in report.excluded_frames.values()))
    return report


@dataclass
class _Prepared:
    files: list[tuple[Path, bytes]]
    records: dict[tuple[str, str], list]
    reused_selections: int = 0


def _prepare_scenes(layout: DataLayout, cfg: DataConfig, all_scenes: list[tuple[str, str]],
                    frame_lists: dict[str, FrameList], staging: Path, progress: bool) -> _Prepared:
    """Per scene: points (into ``staging``), boxes, voxels, coverage picks; then every metadata file and record
    list in memory."""
    from vega3d.logs import progress as progress_bar

    to_class = label_classes(layout)
    scenes = list(dict.fromkeys(split for split, _ in all_scenes))
    gt: dict[str, dict[str, list]] = {split: {} for split in scenes}
    pred: dict[str, dict[str, list]] = {split: {} for split in scenes}
    voxel_sets: dict[str, np.ndarray] = {}
    selections: list[dict[str, Any]] = []
    objects: dict[str, SceneObjects] = {}
    budget = selection_budget(cfg.frames_upbound)
    select_path = layout.select_frames_path(cfg.voxel_size, budget, cfg.mask_invalid_depth)
    previous = _previous_selections(select_path)
    reused = 0
    for split, scene in progress_bar(all_scenes, desc="prep scenes", unit="scene", disable=not progress):
        points = aligned_scene_points(layout, scene)
        write_scene_points(staging / f"{scene}.npz", points)
        if points.labels:
            boxes = gt_boxes(points, layout.aggregation_path(scene))
            gt[split][video_id(scene)] = boxes
            objects[scene] = SceneObjects(np.asarray(boxes, dtype=np.float64).reshape(-1, 6))
        if split != "train" and layout.mask_path(scene).is_file():
            pred[split][video_id(scene)] = predicted_boxes(points.xyz, layout.mask_path(scene))
        voxel_sets[scene] = voxel_set(points.xyz, cfg.voxel_size)
        inputs = _selection_digest(frame_lists[scene].frames, voxel_sets[scene])
        entry = previous.get(video_id(scene))
        if entry is not None and entry["inputs"] == inputs:  # same settings, same frames and scene: reuse
            reused += 1
        else:
            entry = coverage_selection(layout, scene, voxel_sets[scene], budget, cfg.voxel_size,
                                       frame_lists[scene].frames, cfg.mask_invalid_depth)
            entry["inputs"] = inputs
        selections.append(entry)
        logger.info("%s (%s): %d vertices, %d objects, %d voxels", scene, split, len(points.xyz),
                    len(points.labels), len(voxel_sets[scene]))
    records = _build_records(layout, cfg, objects, to_class)
    outputs: list[tuple[Path, bytes]] = []
    for split in scenes:
        if gt[split]:
            outputs.append((layout.gt_box_path(split), json.dumps(gt[split]).encode()))
        if split != "train" and pred[split]:
            outputs.append((layout.pred_box_path(split), json.dumps(pred[split]).encode()))
    logger.info("frame selections: %d of %d scenes reused from %s", reused, len(all_scenes), select_path)
    outputs.append((layout.voxel_path(cfg.voxel_size), _pickle_bytes(voxel_sets)))
    outputs.append((select_path, json.dumps(selections).encode()))
    lists = {video_id(scene): frame_lists[scene].as_json() for _, scene in all_scenes}
    outputs.append((frame_lists_path(layout), json.dumps(lists).encode()))
    for (task, split), task_records in records.items():
        outputs.append((layout.processed_path(task, split), json.dumps(task_records, indent=1).encode()))
    return _Prepared(files=outputs, records=records, reused_selections=reused)
