"""Object proposals without Mask3D: user boxes, or boxes of clusters in the scene's point cloud.

Built-in proposals (aligned frame, z up, walls along x and y):
1. back-project the frames' depth with normals (``vega3d.ask.alignment.oriented_points``);
2. structural planes: along each axis, 2 cm bins of the points whose normal is along that axis; a bin at the
   scene's extreme along the axis (within ``extreme_band``) covering more than ``min_plane_area`` square metres
   (10 cm cells) is the floor, a wall or the ceiling; points within ``plane_band`` of it are dropped;
3. the rest, reduced to a ``voxel`` grid, is clustered with scikit-learn's DBSCAN; each cluster's
   axis-aligned box (trimmed 1st-99th percentile) is a proposal; a box ending within ``snap`` of a removed
   plane is extended to it (objects stand on the floor and against walls, whose contact faces are hidden), and
   a flat cluster (thinner than ``flat``) facing away from a wall up to ``max_behind`` away is extended to that
   wall (the front of a cabinet seen from inside the room, its sides edge-on);
4. the ``max_proposals`` clusters with the most points are kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vega3d.ask.alignment import OrientedPoints


@dataclass(frozen=True)
class ProposalSettings:
    """Knobs of the built-in proposals (metres)."""

    voxel: float = 0.03
    eps: float = 0.07
    min_samples: int = 4
    min_points: int = 12
    plane_band: float = 0.03
    min_plane_area: float = 1.0
    extreme_band: float = 0.1
    snap: float = 0.1
    flat: float = 0.1
    max_behind: float = 1.0
    min_size: float = 0.02


def structural_planes(cloud: OrientedPoints, settings: ProposalSettings) -> list[tuple[int, float]]:
    """(axis, offset) of the floor, walls and ceiling: planes (2 cm bins of the points whose normal is along
    an axis) that lie at the scene's extreme along that axis and cover more than ``min_plane_area``."""
    found: list[tuple[int, float, bool]] = []
    for axis in range(3):
        along = np.abs(cloud.normals[:, axis]) > np.cos(np.radians(10.0))
        coords = cloud.points[along, axis]
        if not len(coords):
            continue
        low, high = np.percentile(cloud.points[:, axis], [0.5, 99.5])
        bins = np.floor(coords / 0.02).astype(np.int64)
        others = [a for a in range(3) if a != axis]
        for value in np.unique(bins):
            members = cloud.points[along][bins == value]
            offset = float(np.median(members[:, axis]))
            if min(abs(offset - low), abs(offset - high)) > settings.extreme_band:
                continue
            cells = np.unique(np.floor(members[:, others] / 0.1).astype(np.int64), axis=0)
            if len(cells) * 0.01 > settings.min_plane_area:
                found.append((axis, offset, offset - low < high - offset))
    # on each side only the outermost plane (and bins within plane_band of it): furniture faces standing
    # parallel to a wall just inside it are not the wall
    planes = []
    for axis, offset, low_side in found:
        same = [o for a, o, side in found if a == axis and side == low_side]
        outermost = min(same) if low_side else max(same)
        if abs(offset - outermost) <= settings.plane_band:
            planes.append((axis, offset))
    return planes


def _box(points: np.ndarray, normals: np.ndarray, planes: list[tuple[int, float]],
         settings: ProposalSettings) -> list[float]:
    lo = np.percentile(points, 1.0, axis=0)
    hi = np.percentile(points, 99.0, axis=0)
    facing = normals.mean(axis=0)
    for axis, offset in planes:
        if 0 < lo[axis] - offset < settings.snap:  # touches a floor / wall: extend to it
            lo[axis] = offset
        elif 0 < offset - hi[axis] < settings.snap:
            hi[axis] = offset
        elif axis < 2 and hi[axis] - lo[axis] < settings.flat:
            # only a front face seen (its sides are edge-on from inside the room): the object stands
            # against the wall behind that face
            if facing[axis] > 0.5 and 0 < lo[axis] - offset < settings.max_behind:
                lo[axis] = offset
            elif facing[axis] < -0.5 and 0 < offset - hi[axis] < settings.max_behind:
                hi[axis] = offset
    size = np.maximum(hi - lo, settings.min_size)
    return [float(v) for v in (*((lo + hi) / 2.0), *size)]


def builtin_proposals(cloud: OrientedPoints, max_proposals: int,
                      settings: ProposalSettings = ProposalSettings()) -> list[list[float]]:
    """Boxes [cx, cy, cz, dx, dy, dz] (aligned frame) of the objects in ``cloud``, at most ``max_proposals``."""
    from sklearn.cluster import DBSCAN

    planes = structural_planes(cloud, settings)
    keep = np.ones(len(cloud.points), dtype=bool)
    for axis, offset in planes:
        keep &= np.abs(cloud.points[:, axis] - offset) > settings.plane_band
    points = cloud.points[keep]
    if not len(points):
        return []
    voxels, inverse, counts = np.unique(np.floor(points / settings.voxel).astype(np.int64), axis=0,
                                        return_inverse=True, return_counts=True)
    centres = (voxels + 0.5) * settings.voxel
    labels = DBSCAN(eps=settings.eps, min_samples=settings.min_samples).fit(centres).labels_
    point_labels = labels[inverse.reshape(-1)]
    normals = cloud.normals[keep]
    found = []
    for label in np.unique(labels[labels >= 0]):
        member = point_labels == label
        if member.sum() >= settings.min_points:
            found.append((int(member.sum()), _box(points[member], normals[member], planes, settings)))
    found.sort(key=lambda item: -item[0])
    return [box for _, box in found[:max_proposals]]


def read_boxes(path: str | Path) -> list[list[float]]:
    """User boxes: a JSON list of [cx, cy, cz, dx, dy, dz] (or ``{"boxes": [...]}``); raises naming the entry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the boxes file ({error}); give a JSON list of 6-number boxes") from None
    boxes = data.get("boxes") if isinstance(data, dict) else data
    if not isinstance(boxes, list):
        raise ValueError(f"{path}: expected a JSON list of [cx, cy, cz, dx, dy, dz] boxes")
    return [check_box(box, f"{path}: boxes[{i}]") for i, box in enumerate(boxes)]


def check_box(box: object, where: str) -> list[float]:
    """A [cx, cy, cz, dx, dy, dz] box with finite numbers and sizes >= 0; raises naming ``where``."""
    if (not isinstance(box, (list, tuple)) or len(box) != 6
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
        raise ValueError(f"{where}: a box is 6 numbers cx, cy, cz, dx, dy, dz")
    values = [float(v) for v in box]
    if not np.isfinite(values).all() or min(values[3:]) < 0:
        raise ValueError(f"{where}: box numbers must be finite and the sizes dx, dy, dz >= 0")
    return values
