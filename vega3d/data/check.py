"""``vega3d data check``: validate a data root and list every problem with its fix.

Checks, in order: that the root is a data root (:mod:`vega3d.data.root`; if not, that is the only problem),
the layout (split lists, info files, benchmark files), that every scene referenced by a
split list, an EmbodiedScan info file or a benchmark file is on disk, each scene's frames (same frame numbers
for jpg/png/txt, 16-bit depth of one size that fits the depth intrinsics), its frame list under the invalid-frame
policy (:mod:`vega3d.data.frame_lists`: -inf/NaN poses and unreadable frames are excluded, a scene above the
threshold is a problem), its scan files read exactly as prep reads them (mesh, segments with one id per vertex,
aggregation with objectIds 0..M-1 each owning a vertex, predicted masks over the mesh's vertices), benchmark
records (scene on disk and in the record's split list, no train/eval leakage, no duplicate ids, valid Unicode,
a non-empty val set) and box files indexed by objectId. Check and prep agree: whatever prep would fail on is a
problem here first. By default only image headers are read (fast); ``deep`` decodes every frame, in parallel.
"""

from __future__ import annotations

import json
import logging
import os
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
from vega3d.data.frame_lists import (
    DEFAULT_MAX_INVALID_RATIO,
    FrameList,
    frame_problem,
    refusal,
    scene_frame_list,
)
from vega3d.data.layout import (
    MULTI3DREFER_FILE,
    SCANQA_FILE,
    SCANREFER_FILE,
    SQA3D_ANNOTATIONS_FILE,
    SQA3D_QUESTIONS_FILE,
    DataLayout,
    scene_of,
)
from vega3d.data.root import data_root_problem
from vega3d.data.scannet import read_aggregation, read_axis_alignment, read_matrix
from vega3d.data.scene_points import MAX_PRED_BOXES, aligned_scene_points, gt_boxes, predicted_boxes

logger = logging.getLogger(__name__)

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


Reader = Callable[[], list[dict[str, Any]]]


def benchmark_readers(layout: DataLayout) -> list[tuple[str, str, Path, Reader]]:
    """(task, split, file, reader) of every raw benchmark file the layout expects."""
    readers: list[tuple[str, str, Path, Reader]] = []
    for split in ("train", "val"):
        for task, template, read in (("scanrefer", SCANREFER_FILE, read_scanrefer),
                                     ("multi3drefer", MULTI3DREFER_FILE, read_multi3drefer),
                                     ("scanqa", SCANQA_FILE, read_scanqa)):
            path = layout.benchmark_path(template, split)
            readers.append((task, split, path, lambda read=read, path=path: read(path)))
    for split in ("train", "val", "test"):
        questions = layout.benchmark_path(SQA3D_QUESTIONS_FILE, split)
        annotations = layout.benchmark_path(SQA3D_ANNOTATIONS_FILE, split)
        readers.append(("sqa3d", split, questions, lambda q=questions, a=annotations: read_sqa3d(q, a)))
    return readers


def _info_entries(layout: DataLayout, split: str, problems: list[Problem]) -> dict[str, dict]:
    """Scene -> entry of an EmbodiedScan info file, read through the restricted unpickler."""
    from vega3d.data.embodiedscan import infos_by_scene, read_infos

    path = layout.embodiedscan_info_path(split)
    if not path.is_file():
        problems.append(Problem(str(path), "EmbodiedScan info file missing", RECREATE))
        return {}
    try:
        return infos_by_scene(read_infos(path))
    except DataFileError as error:
        problems.append(_from_error(error))
    return {}


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
        except (UnidentifiedImageError, OSError):
            continue  # an unreadable frame: excluded by the invalid-frame policy
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


DUPLICATE_KEYS = {"scanrefer": ("scene_id", "object_id", "ann_id"), "multi3drefer": ("scene_id", "ann_id"),
                  "scanqa": ("question_id",), "sqa3d": ("question_id",)}


def _has_invalid_unicode(value: Any) -> bool:
    """True when a string anywhere in ``value`` holds a lone surrogate (not encodable as UTF-8)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_invalid_unicode(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_invalid_unicode(v) for v in value)
    return False


def _record_problems(task: str, split: str, path: Path, records: list[dict[str, Any]], split_of: dict[str, str],
                     scenes_on_disk: set[str], counts: dict[str, int | None]) -> list[Problem]:
    """Scenes (on disk, in the record's split list, no train/eval leakage), object ids, duplicates, Unicode."""
    problems: list[Problem] = []
    missing: dict[str, int] = {}
    seen: dict[tuple, int] = {}
    for index, record in enumerate(records):
        key = tuple(str(record.get(name)) for name in DUPLICATE_KEYS[task])
        if key in seen:
            problems.append(Problem(str(path), f"record {index} repeats the id {'/'.join(key)} of record {seen[key]}",
                                    "drop or renumber the duplicate"))
        seen.setdefault(key, index)
        if _has_invalid_unicode(record):
            problems.append(Problem(str(path), f"record {index}: a string holds invalid Unicode (a lone surrogate)",
                                    "re-encode the file as UTF-8"))
        scene = record["scene_id"]
        if scene not in scenes_on_disk:
            missing.setdefault(scene, index)
            continue
        listed = split_of.get(scene)
        if listed is None:
            problems.append(Problem(str(path), f"record {index}: scene {scene} is in no split list",
                                    f"add {scene} to metadata/scannetv2_{split}.txt or drop its records"))
            continue
        if (listed == "train") != (split == "train"):
            problems.append(Problem(str(path), f"record {index}: split leakage, a {split} record on the {listed} "
                                    f"scene {scene}", "keep train and evaluation scenes apart (fix the record or "
                                    "the split lists)"))
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


def _check_benchmarks(layout: DataLayout, scenes_on_disk: set[str], counts: dict[str, int | None],
                      split_of: dict[str, str]) -> list[Problem]:
    problems: list[Problem] = []
    for task, split, path, read in benchmark_readers(layout):
        try:
            records = read()
        except BenchmarkFormatError as error:  # "<path>: <what>; <how to fix>"
            what, _, fix = str(error).removeprefix(f"{path}: ").rpartition("; ")
            problems.append(Problem(str(path), what or fix, fix if what else RECREATE))
            continue
        if split == "val" and not records:
            problems.append(Problem(str(path), f"no {task} val records: evaluation would score an empty set",
                                    "restore the val file (or drop the task from data.tasks)"))
        problems += _record_problems(task, split, path, records, split_of, scenes_on_disk, counts)
    return problems


def _check_geometry(layout: DataLayout, scene: str, split: str) -> list[Problem]:
    """Read the scene exactly as prep does (points, ground-truth and predicted boxes); a failure is a problem."""
    try:
        points = aligned_scene_points(layout, scene)
        if points.labels:
            gt_boxes(points, layout.aggregation_path(scene))
        if split != "train" and layout.mask_path(scene).is_file():
            predicted_boxes(points.xyz, layout.mask_path(scene))
    except DataFileError as error:
        return [_from_error(error)]
    return []


def _decode_all(layout: DataLayout, scenes: list[str], progress: bool) -> dict[tuple[str, int], str | None]:
    """Fully decode every frame of ``scenes`` in parallel threads: (scene, frame) -> reason or None."""
    from concurrent.futures import ThreadPoolExecutor

    from vega3d.data.frame_lists import disk_frame_ids
    from vega3d.logs import progress as progress_bar

    jobs = [(scene, frame) for scene in scenes for frame in disk_frame_ids(layout, scene)]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = pool.map(lambda job: frame_problem(layout, job[0], job[1], deep=True), jobs)
        reasons = list(progress_bar(results, total=len(jobs), desc="decode frames", unit="frame", disable=not progress))
    return dict(zip(jobs, reasons, strict=True))


def _check_frame_list(layout: DataLayout, scene: str, info: tuple[Path, dict] | None,
                      decoded: dict[tuple[str, int], str | None] | None, max_invalid_ratio: float,
                      frame_lists: dict[str, FrameList]) -> list[Problem]:
    """The scene's frame list under the invalid-frame policy; a refused scene or a disagreement is a problem."""
    problem = None if decoded is None else (lambda frame: decoded[(scene, frame)])
    try:
        frame_list = scene_frame_list(layout, scene, info[1] if info else None, info[0] if info else None,
                                      problem=problem)
    except DataFileError as error:
        return [_from_error(error)]
    frame_lists[scene] = frame_list
    for frame, reason in frame_list.excluded.items():
        logger.warning("%s frame %05d excluded: %s", scene, frame, reason)
    reason = refusal(frame_list, max_invalid_ratio)
    if reason:
        return [Problem(str(layout.posed_images_dir(scene)), f"scene refused: {reason}",
                        "re-export the scene's frames, or raise the threshold (--max-invalid-frames)")]
    return []


def _scene_folders(layout: DataLayout) -> set[str]:
    """Scenes with both a posed_images and a scans folder."""
    images = layout.root / "scannet" / "posed_images"
    names = {p.name for p in images.iterdir() if p.is_dir()} if images.is_dir() else set()
    return {name for name in names if layout.scan_dir(name).is_dir()}


def check_data_root(root: str | Path, progress: bool = False, deep: bool = False,
                    max_invalid_ratio: float = DEFAULT_MAX_INVALID_RATIO,
                    frame_lists: dict[str, FrameList] | None = None) -> list[Problem]:
    """Every problem of a data root (empty list = ready for `vega3d data prep`).

    ``deep`` decodes every frame (parallel, progress bar) instead of reading headers; ``frame_lists``, when
    given, receives each scene's frame list with its excluded frames (what prep writes).
    """
    from vega3d.logs import progress as progress_bar

    layout = DataLayout(root)
    not_a_root = data_root_problem(layout.root)
    if not_a_root:  # nothing under it is worth listing (vega3d.data.root: the same words as the CLI and preflight)
        return [Problem(str(layout.root), not_a_root.what, not_a_root.fix)]
    frame_lists = {} if frame_lists is None else frame_lists
    problems: list[Problem] = []
    split_of: dict[str, str] = {}
    infos: dict[str, tuple[Path, dict]] = {}
    for split in ("train", "val", "test"):
        path = layout.split_file_path(split)
        if not path.is_file() and split != "test":
            problems.append(Problem(str(path), "split list missing", RECREATE))
        if path.is_file() or layout.embodiedscan_info_path(split).is_file():
            entries = _info_entries(layout, split, problems)
            infos.update({scene: (layout.embodiedscan_info_path(split), entry) for scene, entry in entries.items()})
            for scene in read_split_scenes(layout, split) + sorted(entries):
                if split_of.setdefault(scene, split) != split and split_of[scene] == "train":
                    problems.append(Problem(str(path), f"split leakage: {scene} is listed for train and {split}",
                                            "list each scene in one split only"))
    on_disk = {s for s in split_of if layout.posed_images_dir(s).is_dir() and layout.scan_dir(s).is_dir()}
    for scene in sorted(set(split_of) - on_disk):
        folder = layout.posed_images_dir(scene) if not layout.posed_images_dir(scene).is_dir() else layout.scan_dir(scene)
        problems.append(Problem(str(folder), f"scene {scene} is listed for {split_of[scene]} but not on disk",
                                f"add {scene} or remove it from the split list and info file"))
    decoded = _decode_all(layout, sorted(on_disk), progress) if deep else None
    counts: dict[str, int | None] = {}
    for scene in progress_bar(sorted(on_disk), desc="check scenes", disable=not progress, unit="scene"):
        problems += _check_frames(layout, scene)
        problems += _check_frame_list(layout, scene, infos.get(scene), decoded, max_invalid_ratio, frame_lists)
        scan_problems = _check_scan(layout, scene, split_of[scene])
        problems += scan_problems or _check_geometry(layout, scene, split_of[scene])
        try:
            counts[scene] = scene_object_count(layout, scene)
        except DataFileError:
            counts[scene] = None  # already reported by _check_scan
    problems += _check_benchmarks(layout, on_disk | _scene_folders(layout), counts, split_of)
    for split in ("train", "val", "test"):
        for path, predicted in ((layout.gt_box_path(split), False), (layout.pred_box_path(split), True)):
            if path.is_file():
                problems += _check_box_file(path, counts, predicted)
    excluded = sum(len(f.excluded) for f in frame_lists.values())
    logger.info("checked %s: %d scenes, %d problems, %d invalid frames excluded (%s)", layout.root, len(on_disk),
                len(problems), excluded, "every frame decoded" if deep else "image headers only; --deep decodes")
    return problems


def format_problems(problems: Iterable[Problem]) -> str:
    """Plain-text listing (for exceptions and logs): one 'path: problem -> fix' per line."""
    return "\n".join(f"  {p.path}: {p.problem} -> {p.fix}" for p in problems)
