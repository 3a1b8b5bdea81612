"""A user's capture -> a scene in the ScanNet ``posed_images`` layout under a staging data root.

Accepted inputs (told apart by what the path holds):
- a ScanNet-layout scene folder (``NNNNN.jpg``, ``NNNNN.png`` uint16 mm depth, ``NNNNN.txt`` camera-to-world,
  ``depth_intrinsic.txt``), e.g. ``<root>/scannet/posed_images/<scene>``; its axis alignment is read from
  ``<root>/scannet/scans/<scene>/<scene>.txt`` or a ``<scene>.txt`` inside the folder;
- a ScanNet ``.sens`` file (exported with ``vega3d.data.sens.export_posed_images``, every 10th frame); the
  alignment from the ``<scene>.txt`` beside it (ScanNet keeps both in ``scans/<scene>/``);
- a nerfstudio capture: a folder with ``transforms.json`` (OpenGL camera-to-world ``transform_matrix``,
  ``fl_x fl_y cx cy w h``, per-frame ``depth_file_path``: 16-bit PNG millimetres or ``.npy`` metres). Lens
  distortion is ignored. A vega3d key ``axis_alignment`` (4x4, input -> aligned) may carry the alignment.

Absent an alignment it is estimated (``vega3d.ask.alignment``). The staged scene's frames are then read by the
same code training and evaluation use (``vega3d.data.frames``); ``to_input`` maps the model's aligned frame
back to the input's own frame, in which answers are returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vega3d.data import scannet
from vega3d.data.errors import DataFileError
from vega3d.data.layout import DataLayout

logger = logging.getLogger(__name__)

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
NERFSTUDIO_FILE = "transforms.json"


@dataclass(frozen=True)
class StagedScene:
    """A user scene staged under a data root: ``scene`` is its id there."""

    scene: str
    source: str
    kind: str  # "scannet" | "sens" | "nerfstudio"
    axis_align: np.ndarray  # [4, 4] input frame -> aligned (model) frame
    alignment_estimated: bool

    @property
    def to_input(self) -> np.ndarray:
        """[4, 4] aligned (model) frame -> the input's own frame."""
        return np.linalg.inv(self.axis_align)


def check_alignment(matrix: object, where: str) -> np.ndarray:
    """A rigid 4x4 input -> aligned transform (rotation + translation, metres kept); raises naming ``where``."""
    try:
        value = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        value = np.zeros(0)
    if value.shape != (4, 4) or not np.isfinite(value).all():
        raise ValueError(f"{where}: must be a 4x4 matrix of finite numbers (input -> aligned)")
    rotation = value[:3, :3]
    rigid = np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-4) and np.linalg.det(rotation) > 0
    if not rigid or not np.allclose(value[3], [0, 0, 0, 1]):
        raise ValueError(f"{where}: must be rigid (a rotation and a translation, last row 0 0 0 1)")
    return value


def input_kind(path: Path) -> str:
    """What a scene path holds: ``scannet``, ``sens`` or ``nerfstudio``; raises naming the path otherwise."""
    if path.is_file() and path.suffix == ".sens":
        return "sens"
    if (path.is_file() and path.name == NERFSTUDIO_FILE) or (path / NERFSTUDIO_FILE).is_file():
        return "nerfstudio"
    if path.is_dir() and (path / "depth_intrinsic.txt").is_file():
        return "scannet"
    raise FileNotFoundError(
        f"{path}: not a scene: give a ScanNet posed_images scene folder (with depth_intrinsic.txt), a .sens file, "
        f"or a nerfstudio folder with {NERFSTUDIO_FILE}"
    )


def _scene_name(path: Path) -> str:
    stem = path.parent.name if path.name == NERFSTUDIO_FILE else path.stem if path.suffix == ".sens" else path.name
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "scene"


def _scannet_alignment(folder: Path, scene: str) -> np.ndarray | None:
    """The axisAlignment of a posed_images scene folder, or None when no scan meta file is found."""
    candidates = [folder / f"{scene}.txt", folder.parent / f"{scene}.txt"]
    if folder.parent.name == "posed_images":
        candidates.insert(0, folder.parent.parent / "scans" / scene / f"{scene}.txt")
    for candidate in candidates:
        if candidate.is_file():
            return scannet.read_axis_alignment(candidate)
    return None


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        target.symlink_to(source.resolve())
    except OSError:
        shutil.copyfile(source, target)


def _frame_ids(names: list[str]) -> list[int]:
    """Frame numbers from file names (the last digit run) when they are unique, else 0, 10, 20, ..."""
    digits = [re.findall(r"\d+", Path(n).stem) for n in names]
    ids = [int(d[-1]) if d else -1 for d in digits]
    if min(ids, default=-1) >= 0 and len(set(ids)) == len(ids):
        return ids
    return [10 * i for i in range(len(names))]


def _intrinsic(meta: dict, frame: dict, where: str) -> tuple[np.ndarray, tuple[int, int]]:
    """([4, 4] pinhole intrinsics, (w, h)) of a frame: its own camera fields, else the capture's."""
    values = {}
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
        value = frame.get(key, meta.get(key))
        if not isinstance(value, (int, float)):
            raise DataFileError(where, f"camera field {key!r} missing or not a number", "export the capture again")
        values[key] = float(value)
    k = np.eye(4)
    k[0, 0], k[1, 1], k[0, 2], k[1, 2] = values["fl_x"], values["fl_y"], values["cx"], values["cy"]
    return k, (int(values["w"]), int(values["h"]))


def _inside(folder: Path, relative: object, where: str) -> Path:
    """A file named by the capture, which must lie inside the capture folder."""
    if not isinstance(relative, str) or not relative:
        raise DataFileError(where, "file path missing or not a string", "export the capture again")
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise DataFileError(where, f"{relative} points outside the capture folder", "keep frames inside it")
    return path


def _depth_mm(path: Path) -> np.ndarray:
    """Depth of a frame as uint16 millimetres: a 16-bit PNG as is, a ``.npy`` in metres converted."""
    if path.suffix == ".npy":
        metres = np.load(path, allow_pickle=False).astype(np.float64)
        return np.where(np.isfinite(metres) & (metres > 0), np.rint(metres * 1000.0), 0).clip(0, 65535).astype(np.uint16)
    return scannet.read_depth_mm(path)


def stage_nerfstudio(folder: Path, layout: DataLayout, scene: str) -> np.ndarray | None:
    """Write a nerfstudio capture as ``posed_images/<scene>``; returns its ``axis_alignment`` or None."""
    meta_path = folder / NERFSTUDIO_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise DataFileError(meta_path, f"not valid JSON ({error})", "export the capture again") from None
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DataFileError(meta_path, "no 'frames' list", "export the capture again")
    ids = _frame_ids([str(f.get("file_path", "")) for f in frames])
    out = layout.posed_images_dir(scene)
    depth_k = None
    for number, (frame_id, frame) in enumerate(zip(ids, frames, strict=True)):
        where = f"{meta_path} frames[{number}]"
        if "depth_file_path" not in frame:
            raise DataFileError(where, "no depth_file_path (an RGB-D capture is needed)", "export with depth")
        pose = np.asarray(frame.get("transform_matrix"), dtype=np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise DataFileError(where, "transform_matrix must be a finite 4x4 matrix", "export the capture again")
        k, (width, _) = _intrinsic(meta, frame, where)
        color = _inside(folder, frame.get("file_path"), where)
        depth = _depth_mm(_inside(folder, frame["depth_file_path"], where))
        scale = depth.shape[1] / width  # depth maps are often smaller than the colour image
        depth_k = k.copy()
        depth_k[:2, :3] *= scale
        if color.suffix.lower() in (".jpg", ".jpeg"):
            _link_or_copy(color, layout.color_path(scene, frame_id))
        else:
            scannet.write_color(layout.color_path(scene, frame_id), scannet.read_color(color), quality=95)
        scannet.write_depth_mm(layout.depth_path(scene, frame_id), depth)
        scannet.write_matrix(layout.pose_path(scene, frame_id), pose @ OPENGL_TO_OPENCV)
        if number == 0:
            scannet.write_matrix(layout.intrinsic_path(scene), k)
    scannet.write_matrix(layout.depth_intrinsic_path(scene), depth_k)
    logger.info("staged %d nerfstudio frames of %s into %s", len(frames), folder, out)
    if "axis_alignment" in meta:
        return check_alignment(meta["axis_alignment"], f"{meta_path}: axis_alignment")
    return None


def stage_scannet(folder: Path, layout: DataLayout, scene: str) -> np.ndarray | None:
    """Link a posed_images scene folder's files into the staging root; returns its alignment or None."""
    target = layout.posed_images_dir(scene)
    target.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.is_file() and item.suffix in (".jpg", ".png", ".txt") and item.stem != scene:
            _link_or_copy(item, target / item.name)
    return _scannet_alignment(folder, folder.name)


def stage_sens(path: Path, layout: DataLayout, scene: str) -> np.ndarray | None:
    """Export every 10th frame of a .sens file; the alignment from ``<scene>.txt`` beside it, if any."""
    from vega3d.data.sens import export_posed_images

    export_posed_images(path, layout, scene)
    meta = path.with_suffix(".txt")
    return scannet.read_axis_alignment(meta) if meta.is_file() else None


STAGERS = {"scannet": stage_scannet, "sens": stage_sens, "nerfstudio": stage_nerfstudio}


class SceneStager:
    """Stages user scenes under one data root (one per process), once per distinct source."""

    def __init__(self, root: str | Path) -> None:
        self.layout = DataLayout(root)
        self._staged: dict[str, StagedScene] = {}

    def _key(self, path: Path) -> str:
        """The staged scene id: the input's own name (generative noise is seeded by it), made unique."""
        name = _scene_name(path)
        taken = {s.scene for s in self._staged.values()}
        if name in taken:
            name = f"{name}_{hashlib.sha256(f'{path}#{len(self._staged)}'.encode()).hexdigest()[:8]}"
        return name

    def stage(self, path: str | Path, axis_align: np.ndarray | None = None) -> StagedScene:
        """Stage ``path`` (see the module docstring); ``axis_align`` overrides the input's own alignment."""
        from vega3d.ask.alignment import estimate_scene_alignment

        path = Path(path).expanduser().resolve()
        if not path.exists():
            raise FileNotFoundError(f"{path}: scene path does not exist")
        kind = input_kind(path)
        folder = path.parent if path.name == NERFSTUDIO_FILE else path
        source = str(folder)
        key = source if axis_align is None else f"{source}#{np.asarray(axis_align, dtype=np.float64).tobytes().hex()}"
        if key in self._staged:
            return self._staged[key]
        scene = self._key(folder)  # a new id per (source, alignment): cached model inputs never go stale
        found = STAGERS[kind](folder, self.layout, scene)
        align = axis_align if axis_align is not None else found
        estimated = align is None
        if estimated:
            scannet.write_scan_meta(self.layout.scan_meta_path(scene), np.eye(4))  # poses stay in the input frame
            align = estimate_scene_alignment(self.layout, scene)
            logger.info("%s: no axis alignment given; estimated one (floor + dominant wall)", source)
        align = np.asarray(align, dtype=np.float64).reshape(4, 4)
        scannet.write_scan_meta(self.layout.scan_meta_path(scene), align)
        staged = StagedScene(scene, source, kind, align, estimated)
        self._staged[key] = staged
        return staged

