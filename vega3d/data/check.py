"""``vega3d data check``: validate a data root and list every problem with its fix.

Checks, in order: the layout (split lists, info files, benchmark files), that every scene referenced by a
split list, an EmbodiedScan info file or a benchmark file is on disk, each scene's frames (same frame numbers
for jpg/png/txt, readable 16-bit depth of one size that fits the depth intrinsics, finite poses), its scan files
(axis alignment, mesh, segments, aggregation with objectIds 0..M-1), and box files indexed by objectId (one
box per aggregation object; at most 50 predicted boxes). Only file headers are read for images, so a check
of a full root stays fast.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vega3d.data.benchmark_formats import (
    BenchmarkFormatError,
    read_multi3drefer,
    read_scanqa,
    read_scanrefer,
    read_sqa3d,
)
from vega3d.data.errors import DataFileError
from vega3d.data.layout import (
    MULTI3DREFER_FILE,
    SCANQA_FILE,
    SCANREFER_FILE,
    SQA3D_ANNOTATIONS_FILE,
    SQA3D_QUESTIONS_FILE,
    DataLayout,
    scene_of,
)
from vega3d.data.scannet import read_aggregation, read_axis_alignment, read_matrix, read_pose

logger = logging.getLogger(__name__)

MAX_PRED_BOXES = 50
DEPTH_MODES = ("I;16", "I;16B", "I;16L")
RECREATE = "re-run `vega3d data synth` (synthetic root) or re-download the file"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a data root: the file, what is wrong, and how to fix it."""

    path: str
    problem: str
    fix: str


def _from_error(error: DataFileError) -> Problem:
    return Problem(error.path, error.problem, error.fix)


def read_split_scenes(layout: DataLayout, split: str) -> list[str]:
    """Scenes listed in ``metadata/scannetv2_<split>.txt`` (one per line); empty when the file is absent."""
    path = layout.split_file_path(split)
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def benchmark_readers(layout: DataLayout) -> list[tuple[str, Path, Callable[[], list[dict[str, Any]]]]]:
    """(task, file, reader) of every raw benchmark file the layout expects."""
    readers: list[tuple[str, Path, Callable[[], list[dict[str, Any]]]]] = []
    for split in ("train", "val"):
        for task, template, read in (("scanrefer", SCANREFER_FILE, read_scanrefer),
                                     ("multi3drefer", MULTI3DREFER_FILE, read_multi3drefer),
                                     ("scanqa", SCANQA_FILE, read_scanqa)):
            path = layout.benchmark_path(template, split)
            readers.append((task, path, lambda read=read, path=path: read(path)))
    for split in ("train", "val", "test"):
        questions = layout.benchmark_path(SQA3D_QUESTIONS_FILE, split)
        annotations = layout.benchmark_path(SQA3D_ANNOTATIONS_FILE, split)
        readers.append(("sqa3d", questions, lambda q=questions, a=annotations: read_sqa3d(q, a)))
    return readers


def _info_scenes(layout: DataLayout, split: str, problems: list[Problem]) -> set[str]:
    """Scenes of an EmbodiedScan info file, read through the restricted unpickler."""
    from vega3d.data.embodiedscan import infos_by_scene, read_infos

    path = layout.embodiedscan_info_path(split)
    if not path.is_file():
        problems.append(Problem(str(path), "EmbodiedScan info file missing", RECREATE))
        return set()
    try:
        return set(infos_by_scene(read_infos(path)))
    except DataFileError as error:
        problems.append(_from_error(error))
    return set()


def _check_frames(layout: DataLayout, scene: str) -> list[Problem]:
    folder = layout.posed_images_dir(scene)
    problems: list[Problem] = []
    stems = {suffix: {p.stem for p in folder.glob(f"*{suffix}") if p.stem.isdigit()}
             for suffix in (".jpg", ".png", ".txt")}
    every = set().union(*stems.values())
    if not every:
        return [Problem(str(folder), "no frames (NNNNN.jpg/.png/.txt)", RECREATE)]
    for suffix, present in stems.items():
        for stem in sorted(every - present):
            problems.append(Problem(str(folder / f"{stem}{suffix}"), "frame file missing (the other files of this "
                                    "frame exist)", f"restore it or delete the other files of frame {stem}"))
    try:
        intrinsic = read_matrix(layout.depth_intrinsic_path(scene), fix=RECREATE)
        read_matrix(layout.intrinsic_path(scene), fix=RECREATE)
    except DataFileError as error:
        return problems + [_from_error(error)]
    sizes: dict[str, tuple[int, int]] = {}
    for stem in sorted(stems[".png"]):
        path = folder / f"{stem}.png"
        try:
            with Image.open(path) as image:
                mode, sizes[stem] = image.mode, image.size
        except (UnidentifiedImageError, OSError) as error:
            problems.append(Problem(str(path), f"unreadable depth PNG ({error})", "re-export the depth frame"))
            continue
        if mode not in DEPTH_MODES:
            problems.append(Problem(str(path), f"depth must be 16-bit (mode I;16), got {mode}",
                                    "re-export depth as uint16 millimetres"))
    size = Counter(sizes.values()).most_common(1)[0][0] if sizes else None
    for stem, frame_size in sizes.items():
        if frame_size != size:
            problems.append(Problem(str(folder / f"{stem}.png"), f"depth is {frame_size[0]}x{frame_size[1]}, the "
                                    f"scene's other depth frames are {size[0]}x{size[1]}",
                                    "re-export at the scene's depth size"))
    if size is not None:
        cx, cy = intrinsic[0, 2], intrinsic[1, 2]
        if not (size[0] / 4 < cx < 3 * size[0] / 4 and size[1] / 4 < cy < 3 * size[1] / 4):
            problems.append(Problem(str(layout.depth_intrinsic_path(scene)),
                                    f"principal point ({cx:g}, {cy:g}) does not fit {size[0]}x{size[1]} depth",
                                    "use the depth camera's intrinsics for depth_intrinsic.txt"))
    for stem in sorted(stems[".jpg"]):
        path = folder / f"{stem}.jpg"
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - opening parses the header
        except (UnidentifiedImageError, OSError) as error:
            problems.append(Problem(str(path), f"unreadable colour image ({error})", "re-export the frame"))
    for stem in sorted(stems[".txt"]):
        try:
            read_pose(folder / f"{stem}.txt")
        except DataFileError as error:
            problems.append(_from_error(error))
    return problems


def scene_object_count(layout: DataLayout, scene: str) -> int | None:
    """Objects in a scene's aggregation (None when it has none, as ScanNet test scans)."""
    path = layout.aggregation_path(scene)
    return len(read_aggregation(path).object_ids) if path.is_file() else None


def _check_scan(layout: DataLayout, scene: str, split: str) -> list[Problem]:
    problems: list[Problem] = []
    try:
        read_axis_alignment(layout.scan_meta_path(scene))
    except DataFileError as error:
        problems.append(_from_error(error))
    required = [layout.mesh_path(scene)]
    if split != "test":
        required += [layout.segs_path(scene), layout.aggregation_path(scene)]
    for path in required:
        if not path.is_file():
            problems.append(Problem(str(path), "scan file missing", RECREATE))
    if split == "val" and not layout.mask_path(scene).is_file():
        problems.append(Problem(str(layout.mask_path(scene)), "predicted instance masks missing (evaluation "
                                "grounds on their boxes)", "add the scene's Mask3D masks (or re-run synth)"))
    if layout.aggregation_path(scene).is_file():
        try:
            ids = read_aggregation(layout.aggregation_path(scene)).object_ids
        except DataFileError as error:
            return problems + [_from_error(error)]
        if ids != list(range(len(ids))):
            problems.append(Problem(str(layout.aggregation_path(scene)), "objectIds are not 0..M-1",
                                    "renumber the segGroups' objectId consecutively from 0"))
    return problems


def _check_box_file(path: Path, counts: dict[str, int | None], predicted: bool) -> list[Problem]:
    try:
        boxes = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return [Problem(str(path), f"not valid JSON ({error})", "delete it and re-run `vega3d data prep`")]
    if not isinstance(boxes, dict):
        return [Problem(str(path), "expected {\"scannet/<scene>\": [[6 numbers], ...]}",
                        "delete it and re-run `vega3d data prep`")]
    problems = []
    for video, scene_boxes in boxes.items():
        scene = scene_of(video)
        array = np.asarray(scene_boxes, dtype=np.float64) if scene_boxes else np.zeros((0, 6))
        if array.ndim != 2 or array.shape[1] != 6 or not np.isfinite(array).all():
            problems.append(Problem(str(path), f"{video}: boxes must be finite [cx,cy,cz,dx,dy,dz] lists",
                                    "delete it and re-run `vega3d data prep`"))
        elif scene not in counts:
            problems.append(Problem(str(path), f"{video}: scene not on disk", "delete it and re-run `vega3d data prep`"))
        elif predicted and len(array) > MAX_PRED_BOXES:
            problems.append(Problem(str(path), f"{video}: {len(array)} predicted boxes, at most {MAX_PRED_BOXES}",
                                    "keep the 50 best masks; re-run `vega3d data prep`"))
        elif not predicted and counts[scene] is not None and len(array) != counts[scene]:
            problems.append(Problem(str(path), f"{video}: {len(array)} boxes but the aggregation has {counts[scene]} "
                                    "objects (index must be objectId)", "delete it and re-run `vega3d data prep`"))
    return problems


def _check_benchmarks(layout: DataLayout, scenes_on_disk: set[str], counts: dict[str, int | None]) -> list[Problem]:
    problems: list[Problem] = []
    for _, path, read in benchmark_readers(layout):
        try:
            records = read()
        except BenchmarkFormatError as error:
            problems.append(Problem(str(path), str(error).removeprefix(f"{path}: "), RECREATE))
            continue
        missing: dict[str, int] = {}
        for index, record in enumerate(records):
            scene = record["scene_id"]
            if scene not in scenes_on_disk:
                missing.setdefault(scene, index)
                continue
            ids = [int(record["object_id"])] if "object_id" in record else record.get("object_ids", [])
            count = counts.get(scene)
            bad = [i for i in ids if count is not None and not 0 <= i < count]
            if bad:
                problems.append(Problem(str(path), f"record {index} ({scene}): object ids {bad} outside the "
                                        f"aggregation's {count} objects", "fix the record or the scene's scan"))
        for scene, index in missing.items():
            problems.append(Problem(str(path), f"scene {scene} (first at record {index}) is not on disk",
                                    f"add {scene} under scannet/ or drop its records"))
    return problems


def _scene_folders(layout: DataLayout) -> set[str]:
    """Scenes with both a posed_images and a scans folder."""
    images = layout.root / "scannet" / "posed_images"
    names = {p.name for p in images.iterdir() if p.is_dir()} if images.is_dir() else set()
    return {name for name in names if layout.scan_dir(name).is_dir()}


def check_data_root(root: str | Path, progress: bool = False) -> list[Problem]:
    """Every problem of a data root (empty list = ready for `vega3d data prep`)."""
    from vega3d.logs import progress as progress_bar

    layout = DataLayout(root)
    if not layout.root.is_dir():
        return [Problem(str(layout.root), "data root does not exist", "run `vega3d data synth --root ...` first")]
    problems: list[Problem] = []
    split_of: dict[str, str] = {}
    for split in ("train", "val", "test"):
        path = layout.split_file_path(split)
        if not path.is_file() and split != "test":
            problems.append(Problem(str(path), "split list missing", RECREATE))
        if path.is_file() or layout.embodiedscan_info_path(split).is_file():
            for scene in read_split_scenes(layout, split) + sorted(_info_scenes(layout, split, problems)):
                split_of.setdefault(scene, split)
    on_disk = {s for s in split_of if layout.posed_images_dir(s).is_dir() and layout.scan_dir(s).is_dir()}
    for scene in sorted(set(split_of) - on_disk):
        folder = layout.posed_images_dir(scene) if not layout.posed_images_dir(scene).is_dir() else layout.scan_dir(scene)
        problems.append(Problem(str(folder), f"scene {scene} is listed for {split_of[scene]} but not on disk",
                                f"add {scene} or remove it from the split list and info file"))
    counts: dict[str, int | None] = {}
    for scene in progress_bar(sorted(on_disk), desc="check scenes", disable=not progress, unit="scene"):
        problems += _check_frames(layout, scene)
        problems += _check_scan(layout, scene, split_of[scene])
        try:
            counts[scene] = scene_object_count(layout, scene)
        except DataFileError:
            counts[scene] = None  # already reported by _check_scan
    problems += _check_benchmarks(layout, on_disk | _scene_folders(layout), counts)
    for split in ("train", "val", "test"):
        for path, predicted in ((layout.gt_box_path(split), False), (layout.pred_box_path(split), True)):
            if path.is_file():
                problems += _check_box_file(path, counts, predicted)
    logger.info("checked %s: %d scenes, %d problems", layout.root, len(on_disk), len(problems))
    return problems


def format_problems(problems: Iterable[Problem]) -> str:
    """Plain-text listing (for exceptions and logs): one 'path: problem -> fix' per line."""
    return "\n".join(f"  {p.path}: {p.problem} -> {p.fix}" for p in problems)
