"""Readers and writers of every raw ScanNet file in the layout of SPEC.md section 5.

posed_images: ``NNNNN.jpg`` colour, ``NNNNN.png`` uint16 depth in millimetres (0 = invalid), ``NNNNN.txt``
4x4 camera-to-world pose (OpenCV axes, raw scan frame), ``intrinsic.txt`` and ``depth_intrinsic.txt`` (4x4).
scans: ``<scene>.txt`` with ``axisAlignment = 16 floats`` (raw -> aligned), the ``_vh_clean_2.ply`` mesh,
its ``.segs.json`` over-segmentation and the ``.aggregation.json`` instance annotation.
mask: ``<scene>.mask.npz`` predicted instance masks as a scipy sparse matrix [num_masks, num_vertices].

Every reader raises :class:`~vega3d.data.errors.DataFileError` naming the file when it is missing, cannot be
decoded or holds invalid values; every writer writes atomically (temporary name, then rename).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from PIL import Image, UnidentifiedImageError

from vega3d.data.errors import DataFileError, require_file
from vega3d.storage import atomic_local_path, write_bytes, write_text

# --- images -----------------------------------------------------------------------------------------------


def read_color(path: str | Path) -> np.ndarray:
    """Colour image -> uint8 [H, W, 3]."""
    path = require_file(path)
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataFileError(path, f"not a readable image ({error})", "re-export the frame") from None


def write_color(path: str | Path, rgb: np.ndarray, quality: int = 92) -> None:
    """uint8 [H, W, 3] -> JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(buffer, "JPEG", quality=quality)
    write_bytes(str(path), buffer.getvalue())


def read_depth_mm(path: str | Path) -> np.ndarray:
    """16-bit PNG depth -> uint16 [H, W] millimetres (0 = invalid)."""
    path = require_file(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("I;16", "I;16B", "I;16L", "I"):
                raise DataFileError(
                    path, f"depth must be a 16-bit PNG, got mode {image.mode}", "re-export depth as uint16 mm"
                )
            depth = np.asarray(image)
            if depth.dtype != np.uint16 and (depth.min(initial=0) < 0 or depth.max(initial=0) > 65535):
                raise DataFileError(path, "depth values outside uint16", "re-export depth as uint16 mm")
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataFileError(path, f"not a readable PNG ({error})", "re-export the depth frame") from None
    return depth.astype(np.uint16, copy=False)


def read_depth(path: str | Path) -> np.ndarray:
    """16-bit PNG depth -> float32 [H, W] metres (0 = invalid)."""
    return read_depth_mm(path).astype(np.float32) * np.float32(1e-3)


def write_depth_mm(path: str | Path, depth_mm: np.ndarray, compress_level: int = 1) -> None:
    """uint16 [H, W] millimetres -> 16-bit PNG."""
    depth_mm = np.asarray(depth_mm)
    if depth_mm.dtype != np.uint16 or depth_mm.ndim != 2:
        raise ValueError(f"depth must be uint16 [H, W] millimetres, got {depth_mm.dtype} {depth_mm.shape}")
    buffer = io.BytesIO()
    Image.fromarray(depth_mm).save(buffer, "PNG", compress_level=compress_level)
    write_bytes(str(path), buffer.getvalue())


# --- matrices ----------------------------------------------------------------------------------------------


def read_matrix(path: str | Path, fix: str = "re-export the file") -> np.ndarray:
    """Whitespace-separated 4x4 text matrix -> float64 [4, 4]; NaN/inf or a wrong shape is an error."""
    path = require_file(path)
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as error:
        raise DataFileError(path, f"not a 4x4 matrix of numbers ({error})", fix) from None
    if values.size != 16:
        raise DataFileError(path, f"expected 16 numbers (4x4 matrix), found {values.size}", fix)
    if not np.isfinite(values).all():
        raise DataFileError(path, "matrix contains NaN or inf", fix)
    return values.reshape(4, 4)


def read_pose(path: str | Path) -> np.ndarray:
    """4x4 camera-to-world pose (OpenCV axes, raw scan frame) -> float64 [4, 4]."""
    return read_matrix(path, fix="drop this frame from posed_images or re-export its pose")


def format_matrix(matrix: np.ndarray) -> str:
    """4x4 matrix -> text, one row per line (the posed_images format)."""
    matrix = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
    return "\n".join(" ".join(f"{v:.9g}" for v in row) for row in matrix) + "\n"


def write_matrix(path: str | Path, matrix: np.ndarray) -> None:
    """float [4, 4] -> text file."""
    write_text(str(path), format_matrix(matrix))


# --- scans/<scene>/<scene>.txt ------------------------------------------------------------------------------


def read_axis_alignment(path: str | Path) -> np.ndarray:
    """``axisAlignment = 16 floats`` of a scan meta file -> float64 [4, 4] (raw -> aligned).

    ScanNet test scans carry no axisAlignment line: they are already aligned, so the identity is returned.
    """
    path = require_file(path)
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() != "axisAlignment":
            continue
        try:
            values = np.array(value.split(), dtype=np.float64)
        except ValueError as error:
            raise DataFileError(path, f"axisAlignment is not numeric ({error})", "re-download the scan") from None
        if values.size != 16 or not np.isfinite(values).all():
            raise DataFileError(
                path, f"axisAlignment needs 16 finite numbers, found {values.size}", "re-download the scan"
            )
        return values.reshape(4, 4)
    return np.eye(4)


def write_scan_meta(path: str | Path, axis_align: np.ndarray, extra: dict[str, str] | None = None) -> None:
    """Write ``<scene>.txt`` with ``axisAlignment = ...`` plus optional ``key = value`` lines."""
    values = " ".join(f"{v:.9g}" for v in np.asarray(axis_align, dtype=np.float64).reshape(16))
    lines = [f"axisAlignment = {values}"] + [f"{k} = {v}" for k, v in (extra or {}).items()]
    write_text(str(path), "\n".join(lines) + "\n")


# --- mesh, segments, aggregation ----------------------------------------------------------------------------


@dataclass
class Mesh:
    """A scan mesh in the raw scan frame."""

    vertices: np.ndarray  # [N, 3] float32 metres
    colors: np.ndarray  # [N, 3] uint8
    faces: np.ndarray  # [F, 3] int32 vertex indices


_PLY_VERTEX = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
)
_PLY_FACE = np.dtype([("count", "u1"), ("vertex_indices", "<i4", (3,))])


def write_mesh(path: str | Path, mesh: Mesh) -> None:
    """Binary little-endian PLY with ScanNet's properties (x y z red green blue alpha; face vertex_indices).

    Written with numpy records in one go (plyfile writes list properties row by row, 100x slower);
    the result is a standard PLY that plyfile and every mesh tool read.
    """
    vertex = np.empty(len(mesh.vertices), dtype=_PLY_VERTEX)
    for i, axis in enumerate("xyz"):
        vertex[axis] = mesh.vertices[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = mesh.colors[:, i]
    vertex["alpha"] = 255
    face = np.empty(len(mesh.faces), dtype=_PLY_FACE)
    face["count"] = 3
    face["vertex_indices"] = mesh.faces
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertex)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
        f"element face {len(face)}\nproperty list uchar int vertex_indices\nend_header\n"
    )
    write_bytes(str(path), header.encode("ascii") + vertex.tobytes() + face.tobytes())


def read_mesh(path: str | Path) -> Mesh:
    """PLY mesh (plyfile) -> Mesh (vertices float32 [N,3], colours uint8 [N,3], faces int32 [F,3])."""
    from plyfile import PlyData, PlyParseError

    path = require_file(path)
    try:
        # Triangle faces as a fixed-size field (memory-mapped), instead of one Python object per face.
        data = PlyData.read(str(path), known_list_len={"face": {"vertex_indices": 3}})
        vertex = data["vertex"].data
        vertices = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float32)
        names = vertex.dtype.names or ()
        if {"red", "green", "blue"} <= set(names):
            colors = np.stack([vertex["red"], vertex["green"], vertex["blue"]], axis=1).astype(np.uint8)
        else:
            colors = np.zeros((len(vertices), 3), dtype=np.uint8)
        faces = np.zeros((0, 3), dtype=np.int32)
        if "face" in data and len(data["face"].data):
            indices = data["face"].data["vertex_indices"]
            faces = np.stack(indices) if indices.dtype == object else np.asarray(indices)
            faces = faces.astype(np.int32)
    except (KeyError, ValueError, OSError, EOFError, PlyParseError) as error:
        raise DataFileError(path, f"not a readable PLY mesh ({error})", "re-download the scan") from None
    return Mesh(vertices=vertices, colors=colors, faces=faces)


def write_segments(path: str | Path, scene: str, seg_indices: np.ndarray) -> None:
    """``.segs.json``: one segment id per mesh vertex."""
    payload = {"params": {"kThresh": "0.0001", "segMinVerts": "20"}, "sceneId": scene,
               "segIndices": [int(s) for s in seg_indices]}
    write_text(str(path), json.dumps(payload))


def read_segments(path: str | Path) -> np.ndarray:
    """``.segs.json`` -> int64 [N] segment id per vertex."""
    path = require_file(path)
    try:
        return np.asarray(json.loads(path.read_text())["segIndices"], dtype=np.int64)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise DataFileError(path, f"not a segments file with segIndices ({error})", "re-download the scan") from None


@dataclass
class Aggregation:
    """Instance annotation: object ``i`` has label ``labels[i]`` and owns the segments ``segments[i]``."""

    object_ids: list[int]
    labels: list[str]
    segments: list[list[int]]


def write_aggregation(path: str | Path, scene: str, aggregation: Aggregation) -> None:
    """``.aggregation.json`` in ScanNet's format (segGroups with id, objectId, segments, label)."""
    groups = [
        {"id": oid, "objectId": oid, "segments": [int(s) for s in segs], "label": label}
        for oid, label, segs in zip(aggregation.object_ids, aggregation.labels, aggregation.segments, strict=True)
    ]
    payload = {"sceneId": f"scannet.{scene}", "appId": "vega3d.synthetic",
               "segGroups": groups, "segmentsFile": f"scannet.{scene}_vh_clean_2.0.010000.segs.json"}
    write_text(str(path), json.dumps(payload))


def read_aggregation(path: str | Path) -> Aggregation:
    """``.aggregation.json`` -> Aggregation, sorted by objectId."""
    path = require_file(path)
    try:
        groups = sorted(json.loads(path.read_text())["segGroups"], key=lambda g: int(g["objectId"]))
        return Aggregation(
            object_ids=[int(g["objectId"]) for g in groups],
            labels=[str(g["label"]) for g in groups],
            segments=[[int(s) for s in g["segments"]] for g in groups],
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise DataFileError(path, f"not an aggregation file with segGroups ({error})", "re-download the scan") from None


def vertex_instance_ids(seg_indices: np.ndarray, aggregation: Aggregation) -> np.ndarray:
    """Per-vertex objectId (-1 = no object) from the segments and the aggregation: int64 [N]."""
    seg_indices = np.asarray(seg_indices, dtype=np.int64)
    segment_ids = np.unique(seg_indices)
    segment_object = np.full(len(segment_ids), -1, dtype=np.int64)
    for oid, segs in zip(aggregation.object_ids, aggregation.segments, strict=True):
        segment_object[np.searchsorted(segment_ids, np.intersect1d(segs, segment_ids))] = oid
    return segment_object[np.searchsorted(segment_ids, seg_indices)]


# --- predicted instance masks -------------------------------------------------------------------------------


def write_masks(path: str | Path, masks: sp.spmatrix) -> None:
    """Predicted instance masks, bool sparse [num_masks, num_vertices] -> ``.mask.npz`` (scipy save_npz)."""
    masks = sp.csr_matrix(masks, dtype=bool)
    with atomic_local_path(path) as tmp:
        with open(tmp, "wb") as handle:
            sp.save_npz(handle, masks)


def read_masks(path: str | Path) -> sp.csr_matrix:
    """``.mask.npz`` -> bool CSR [num_masks, num_vertices]."""
    path = require_file(path)
    try:
        return sp.csr_matrix(sp.load_npz(str(path)), dtype=bool)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as error:
        raise DataFileError(path, f"not a scipy sparse .npz ({error})", "re-create the predicted masks") from None
