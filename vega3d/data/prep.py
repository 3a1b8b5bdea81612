"""The prep stage: from the raw layout to everything training and evaluation read.

``run_prep(root, cfg)`` first runs ``check_data_root`` and refuses a root with problems. Then, per scene:
the mesh vertices moved into the aligned frame by ``axisAlignment`` with per-vertex instance ids (segments +
aggregation) -> ``scannet/pcd_with_global_alignment/<scene>.npz``; a ground-truth box per aggregation object
(index = objectId); a box per predicted mask (at most 50, in the mask file's order); the scene's voxel set;
and the max-coverage ordering of its candidate frames (back-projected depth, invalid depth masked). Finally
the metadata files and the processed llava-style records of every task are built in memory and only then
written, each atomically, so a failure leaves no partial file in ``metadata/`` or ``processed/``. Re-running
on the same root rewrites identical files.
"""

from __future__ import annotations

import csv
import json
import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vega3d import storage
from vega3d.config import DataConfig
from vega3d.data.benchmark_formats import read_multi3drefer, read_scanqa, read_scanrefer, read_sqa3d
from vega3d.data.boxes import box_from_points
from vega3d.data.check import MAX_PRED_BOXES, Problem, check_data_root, format_problems, read_split_scenes
from vega3d.data.errors import DataFileError
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
from vega3d.data.sampling import coverage_selection
from vega3d.data.scannet import (
    read_aggregation,
    read_axis_alignment,
    read_masks,
    read_mesh,
    read_segments,
    vertex_instance_ids,
)

logger = logging.getLogger(__name__)

PAPER_FRAMES = 32
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
    seconds: float = 0.0


@dataclass
class ScenePoints:
    """Mesh vertices of a scene in the aligned frame."""

    xyz: np.ndarray  # [N, 3] float32 metres, aligned frame
    rgb: np.ndarray  # [N, 3] uint8
    instance: np.ndarray  # [N] int64 objectId, -1 = no object
    labels: list[str]  # label of each objectId (empty without an aggregation)


def aligned_scene_points(layout: DataLayout, scene: str) -> ScenePoints:
    """Read mesh, segments and aggregation, apply axisAlignment: the scene's aligned point cloud."""
    mesh = read_mesh(layout.mesh_path(scene))
    axis_align = read_axis_alignment(layout.scan_meta_path(scene))
    xyz = (mesh.vertices.astype(np.float64) @ axis_align[:3, :3].T + axis_align[:3, 3]).astype(np.float32)
    if layout.aggregation_path(scene).is_file():
        segments = read_segments(layout.segs_path(scene))
        if len(segments) != len(xyz):
            raise DataFileError(layout.segs_path(scene), f"{len(segments)} segment ids for {len(xyz)} mesh vertices",
                                "re-download the scan's segs.json with its mesh")
        aggregation = read_aggregation(layout.aggregation_path(scene))
        instance, labels = vertex_instance_ids(segments, aggregation), aggregation.labels
    else:
        instance, labels = np.full(len(xyz), -1, dtype=np.int64), []
    return ScenePoints(xyz=xyz, rgb=mesh.colors, instance=instance, labels=labels)


def write_scene_points(path: str | Path, points: ScenePoints) -> None:
    """Atomic ``.npz`` with xyz [N,3] float32, rgb [N,3] uint8, instance [N] int64."""
    with storage.atomic_local_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, xyz=points.xyz, rgb=points.rgb, instance=points.instance)


def gt_boxes(points: ScenePoints, where: Path) -> list[list[float]]:
    """Tight aligned box of each object's vertices, index = objectId: [M][6]."""
    boxes = []
    for object_id in range(len(points.labels)):
        members = points.xyz[points.instance == object_id]
        if len(members) == 0:
            raise DataFileError(where, f"object {object_id} ({points.labels[object_id]}) owns no mesh vertex",
                                "fix the aggregation's segments for this object")
        boxes.append([float(v) for v in box_from_points(members)])
    return boxes


def predicted_boxes(xyz: np.ndarray, mask_path: Path, limit: int = MAX_PRED_BOXES) -> list[list[float]]:
    """Aligned box of each predicted mask's vertices (masks in file order, empty masks skipped), <= limit."""
    masks = read_masks(mask_path)
    if masks.shape[1] != len(xyz):
        raise DataFileError(mask_path, f"masks cover {masks.shape[1]} vertices, the mesh has {len(xyz)}",
                            "re-create the predicted masks for this mesh")
    boxes = []
    for row in range(masks.shape[0]):
        vertices = masks.indices[masks.indptr[row]:masks.indptr[row + 1]]
        if len(vertices):
            boxes.append([float(v) for v in box_from_points(xyz[vertices])])
        if len(boxes) == limit:
            break
    return boxes


def selection_budget(cfg: DataConfig) -> int:
    """Greedy picks stored per scene: at least the paper's 32, so any frames_upbound up to it reads a prefix."""
    return max(cfg.frames_upbound, PAPER_FRAMES)


def _pickle_bytes(obj: Any) -> bytes:
    """Pickle of plain containers + numpy arrays (what the restricted loader accepts)."""
    return pickle.dumps(obj, protocol=4)


def _build_records(layout: DataLayout, tasks: list[str], objects: dict[str, SceneObjects]) -> dict[tuple[str, str], list]:
    """Every processed record list, keyed by (task, split); raises before anything is written."""
    built: dict[tuple[str, str], list] = {}
    for task in tasks:
        for split in TASK_SPLITS[task]:
            if task in ("scanrefer", "scan2cap"):
                path = layout.benchmark_path(SCANREFER_FILE, split)
                entries = read_scanrefer(path)
                if task == "scanrefer":
                    records = scanrefer_records(entries, split, objects, str(path))
                else:
                    records = scan2cap_records(entries, split, objects, str(path), per_object=split != "train")
            elif task == "multi3drefer":
                path = layout.benchmark_path(MULTI3DREFER_FILE, split)
                records = multi3drefer_records(read_multi3drefer(path), split, objects, str(path))
            elif task == "scanqa":
                path = layout.benchmark_path(SCANQA_FILE, split)
                records = scanqa_records(read_scanqa(path), split, str(path))
            else:
                questions = layout.benchmark_path(SQA3D_QUESTIONS_FILE, split)
                entries = read_sqa3d(questions, layout.benchmark_path(SQA3D_ANNOTATIONS_FILE, split))
                records = sqa3d_records(entries, split, str(questions))
            built[(task, split)] = records
    return built


def label_classes(layout: DataLayout) -> Callable[[str], str]:
    """Aggregation label -> class for ScanRefer unique/multiple.

    NYU40 class through ScanNet's ``scannetv2-labels.combined.tsv`` (raw_category -> nyu40class) when the
    root has it; otherwise (and for labels the table lacks) the label itself, which is exact for synthetic
    scenes (one label per NYU40 class).
    """
    path = layout.label_map_path()
    if not path.is_file():
        return lambda label: label
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if not {"raw_category", "nyu40class"} <= set(reader.fieldnames or ()):
            raise DataFileError(path, "needs the columns raw_category and nyu40class",
                                "use ScanNet's scannetv2-labels.combined.tsv or remove the file")
        mapping = {row["raw_category"]: row["nyu40class"] for row in reader}
    return lambda label: mapping.get(label, label)


def run_prep(root: str | Path, cfg: DataConfig, progress: bool = True) -> PrepReport:
    """Prepare a data root (see the module docstring). Raises PrepError, writing nothing, when check fails."""
    from vega3d.logs import progress as progress_bar

    started = time.perf_counter()
    layout = DataLayout(root)
    problems = check_data_root(layout.root)
    if problems:
        raise PrepError(layout.root, problems)
    to_class = label_classes(layout)
    scenes = {split: read_split_scenes(layout, split) for split in ("train", "val", "test")}
    report = PrepReport(root=str(layout.root), scenes=scenes)
    gt: dict[str, dict[str, list]] = {split: {} for split in scenes}
    pred: dict[str, dict[str, list]] = {split: {} for split in scenes}
    voxel_sets: dict[str, np.ndarray] = {}
    selections: list[dict[str, Any]] = []
    objects: dict[str, SceneObjects] = {}
    all_scenes = [(split, scene) for split, names in scenes.items() for scene in names]
    for split, scene in progress_bar(all_scenes, desc="prep scenes", unit="scene", disable=not progress):
        points = aligned_scene_points(layout, scene)
        write_scene_points(layout.aligned_points_path(scene), points)
        report.outputs.append(str(layout.aligned_points_path(scene)))
        if points.labels:
            boxes = gt_boxes(points, layout.aggregation_path(scene))
            gt[split][video_id(scene)] = boxes
            objects[scene] = SceneObjects(np.asarray(boxes, dtype=np.float64).reshape(-1, 6),
                                          [to_class(label) for label in points.labels])
        if split != "train" and layout.mask_path(scene).is_file():
            pred[split][video_id(scene)] = predicted_boxes(points.xyz, layout.mask_path(scene))
        voxel_sets[scene] = voxel_set(points.xyz, cfg.voxel_size)
        selections.append(coverage_selection(layout, scene, voxel_sets[scene], selection_budget(cfg), cfg.voxel_size))
        logger.info("%s (%s): %d vertices, %d objects, %d voxels", scene, split, len(points.xyz),
                    len(points.labels), len(voxel_sets[scene]))
    records = _build_records(layout, list(cfg.tasks), objects)
    outputs: list[tuple[Path, bytes]] = []
    for split in scenes:
        if gt[split]:
            outputs.append((layout.gt_box_path(split), json.dumps(gt[split]).encode()))
        if split != "train" and pred[split]:
            outputs.append((layout.pred_box_path(split), json.dumps(pred[split]).encode()))
    outputs.append((layout.voxel_path(), _pickle_bytes(voxel_sets)))
    outputs.append((layout.select_frames_path(), json.dumps(selections).encode()))
    for (task, split), task_records in records.items():
        outputs.append((layout.processed_path(task, split), json.dumps(task_records, indent=1).encode()))
        report.records[f"{task}_{split}"] = len(task_records)
    for path, payload in outputs:
        storage.write_bytes(str(path), payload)
        report.outputs.append(str(path))
    report.seconds = time.perf_counter() - started
    logger.info("prep of %s done in %.1f s: %s", layout.root, report.seconds, report.records)
    return report
