"""A scene's mesh vertices in the aligned frame with instance ids, and the boxes prep derives from them.

Shared by ``vega3d data check`` and ``vega3d data prep``, so that check reports whatever prep would fail on
(corrupt mesh or masks, a segment/vertex count mismatch, an object owning no vertex).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vega3d.data.boxes import box_from_points
from vega3d.data.errors import DataFileError
from vega3d.data.layout import DataLayout
from vega3d.data.scannet import (
    read_aggregation,
    read_axis_alignment,
    read_masks,
    read_mesh,
    read_segments,
    vertex_instance_ids,
)

MAX_PRED_BOXES = 50


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
