"""Deterministic ScanNet-like synthetic scenes written in the real data layout (SPEC.md section 5).

A scene is an open-top room (floor + four walls) holding 4-10 axis-aligned boxes with NYU40/ScanNet labels and
named colours, some labels repeated. The aligned frame has z up, the floor at z = 0 and the room centred on
the origin; the raw scan frame differs from it by a rotation about z plus a translation (``axis_align`` maps
raw -> aligned, as ScanNet's axisAlignment). A camera orbits inside the room looking at its centre; RGB and
uint16 millimetre depth are rendered by ray casting (vega3d.testing.raycast). The generator writes posed images,
poses (raw frame), intrinsics, the scan meta file, mesh + segments + aggregation, predicted instance masks,
EmbodiedScan info files, split lists and ``synthetic_truth.json`` (the truth, for tests and benchmark files).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from vega3d.config import SyntheticConfig
from vega3d.data import embodiedscan, scannet
from vega3d.data.layout import SPLITS, DataLayout
from vega3d.logs import progress as progress_bar
from vega3d.storage import write_json, write_text
from vega3d.testing.raycast import RoomGeometry, render

logger = logging.getLogger(__name__)

TRUTH_FILE = "synthetic_truth.json"
FRAME_STRIDE = 10  # posed_images keep every 10th sensor frame
MAX_DEPTH_M = 10.0  # sensor range; farther hits read 0
DEPTH_DROPOUT = 0.005  # fraction of pixels with missing depth, as a real sensor has
MESH_SPACING = 0.05  # metres between mesh vertices on every surface
SCANNET_FX_640 = 577.870605  # ScanNet depth focal length at 640 px width
PATH_SAMPLES = 256  # points of the camera orbit that object placement keeps clear of


@dataclass(frozen=True)
class Category:
    """A ScanNet label, its NYU40 id, a typical size (dx, dy, dz) and where it goes."""

    nyu40_id: int
    size: tuple[float, float, float]
    place: str = "floor"  # floor | wall (against a wall, on the floor) | window (against a wall, raised)


CATEGORIES: dict[str, Category] = {
    "chair": Category(5, (0.5, 0.5, 0.9)),
    "table": Category(7, (1.4, 0.8, 0.75)),
    "cabinet": Category(3, (0.8, 0.5, 1.0), "wall"),
    "bed": Category(4, (2.0, 1.5, 0.6), "wall"),
    "sofa": Category(6, (2.0, 0.9, 0.8)),
    "desk": Category(14, (1.2, 0.6, 0.75)),
    "bookshelf": Category(10, (0.9, 0.35, 1.8), "wall"),
    "dresser": Category(17, (1.0, 0.5, 0.9), "wall"),
    "nightstand": Category(32, (0.5, 0.45, 0.55)),
    "refrigerator": Category(24, (0.8, 0.7, 1.8), "wall"),
    "toilet": Category(33, (0.45, 0.7, 0.8)),
    "box": Category(29, (0.5, 0.4, 0.4)),
    "door": Category(8, (0.9, 0.06, 2.0), "wall"),
    "window": Category(9, (1.1, 0.06, 1.2), "window"),
}
REPEATABLE = ("chair", "table", "cabinet", "box", "nightstand", "desk", "bookshelf")
WINDOW_SILL = 0.9  # metres above the floor

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "green": (40, 160, 60),
    "blue": (40, 70, 200),
    "yellow": (230, 200, 40),
    "white": (245, 245, 245),
    "black": (30, 30, 30),
    "brown": (120, 70, 30),
    "gray": (128, 128, 128),
    "orange": (240, 130, 20),
    "purple": (130, 50, 160),
}


@dataclass
class ObjectTruth:
    """One annotated object; ``box`` = [cx, cy, cz, dx, dy, dz] in the aligned frame, metres."""

    object_id: int
    label: str
    nyu40_id: int
    color: str
    rgb: tuple[int, int, int]
    box: list[float]


@dataclass
class SceneTruth:
    """What the generator put in a scene; ``axis_align`` is the 4x4 raw -> aligned matrix as nested lists."""

    scene: str
    split: str
    room: list[float]  # [sx, sy, sz]: the room spans [-sx/2, sx/2] x [-sy/2, sy/2] x [0, sz]
    objects: list[ObjectTruth] = field(default_factory=list)
    axis_align: list[list[float]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> SceneTruth:
        objects = [ObjectTruth(**{**o, "rgb": tuple(o["rgb"])}) for o in data["objects"]]
        return cls(scene=data["scene"], split=data["split"], room=list(data["room"]), objects=objects,
                   axis_align=[list(r) for r in data["axis_align"]])


# --- truth ----------------------------------------------------------------------------------------------------


def scene_number(scene: str) -> int:
    """``scene0012_00`` -> 12."""
    return int(scene[len("scene"):].split("_")[0])


def camera_trajectory(room: list[float], num_frames: int) -> np.ndarray:
    """Camera-to-world poses in the ALIGNED frame, OpenCV axes: [V, 4, 4].

    One orbit on an ellipse at half the distance to the walls, height 1.4-1.7 m, looking at points just
    beyond the room centre at 0.4-0.8 m (so the pitch varies).
    """
    sx, sy, _ = room
    phase = np.arange(num_frames) * 2.0 * np.pi / num_frames
    eye = np.stack([0.25 * sx * np.cos(phase), 0.25 * sy * np.sin(phase), 1.55 + 0.15 * np.sin(3 * phase)], axis=1)
    target = np.stack(  # across the centre, so the far walls and the objects along them are in view
        [-0.1 * sx * np.cos(phase) + 0.05 * sx * np.sin(2 * phase), -0.1 * sy * np.sin(phase),
         0.6 + 0.2 * np.cos(2 * phase)], axis=1
    )
    forward = target - eye
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    down = np.cross(forward, right)
    poses = np.tile(np.eye(4), (num_frames, 1, 1))
    poses[:, :3, 0], poses[:, :3, 1], poses[:, :3, 2], poses[:, :3, 3] = right, down, forward, eye
    return poses


def _axis_alignment(rng: np.random.Generator) -> np.ndarray:
    """Raw -> aligned: rotation about z by a random angle plus a translation (never the identity)."""
    angle = rng.uniform(0.3, 2.0 * np.pi - 0.3)
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.eye(4)
    matrix[:2, :2] = [[c, -s], [s, c]]
    matrix[:3, 3] = [rng.uniform(-3, 3), rng.uniform(-3, 3), rng.uniform(-0.3, 0.3)]
    return np.round(matrix, 6)


def _overlaps(lo: np.ndarray, hi: np.ndarray, others: list[tuple[np.ndarray, np.ndarray]], gap: float) -> bool:
    return any(((lo < o_hi + gap) & (hi > o_lo - gap)).all() for o_lo, o_hi in others)


def _place(
    label: str, rng: np.random.Generator, room: list[float], placed: list[tuple[np.ndarray, np.ndarray]],
    path_xy: np.ndarray, tries: int = 60,
) -> list[float] | None:
    """A box for ``label`` that overlaps nothing placed and keeps clear of the camera path, or None."""
    category = CATEGORIES[label]
    half_room = np.array(room[:2]) / 2.0
    for _ in range(tries):
        size = np.array(category.size) * rng.uniform(0.85, 1.15, size=3)
        if category.place == "floor":
            if rng.random() < 0.5:
                size[[0, 1]] = size[[1, 0]]
            centre_xy = rng.uniform(-half_room + size[:2] / 2 + 0.05, half_room - size[:2] / 2 - 0.05)
        else:
            wall_axis = int(rng.integers(2))  # the wall is perpendicular to this axis
            if wall_axis == 0:
                size[[0, 1]] = size[[1, 0]]  # thin side across the wall
            sign = rng.choice([-1.0, 1.0])
            centre_xy = np.empty(2)
            along = 1 - wall_axis
            centre_xy[along] = rng.uniform(-half_room[along] + size[along] / 2 + 0.1, half_room[along] - size[along] / 2 - 0.1)
            centre_xy[wall_axis] = sign * (half_room[wall_axis] - size[wall_axis] / 2)
        bottom = WINDOW_SILL if category.place == "window" else 0.0
        lo = np.array([*(centre_xy - size[:2] / 2), bottom])
        hi = lo + size
        if _overlaps(lo, hi, placed, gap=0.1):
            continue
        near_path = ((path_xy > lo[:2] - 0.45) & (path_xy < hi[:2] + 0.45)).all(axis=1).any()
        if near_path:
            continue
        placed.append((lo, hi))
        return [round(float(v), 4) for v in (*((lo + hi) / 2), *(hi - lo))]
    return None


def scene_truth(scene: str, split: str, seed: int, cfg: SyntheticConfig) -> SceneTruth:
    """The objects, room and axis alignment of one scene: a pure function of (scene, split, seed, cfg)."""
    rng = np.random.default_rng([seed, scene_number(scene)])
    room = [round(float(v), 3) for v in (rng.uniform(5.0, 8.0), rng.uniform(5.0, 8.0), rng.uniform(2.6, 3.2))]
    axis_align = _axis_alignment(rng)
    path_xy = camera_trajectory(room, PATH_SAMPLES)[:, :2, 3]  # objects keep clear of the whole orbit
    num_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    repeated = str(rng.choice(REPEATABLE))
    labels = [repeated] * min(num_objects, int(rng.integers(2, 4)))
    labels += [str(rng.choice(list(CATEGORIES))) for _ in range(num_objects - len(labels))]
    placed: list[tuple[np.ndarray, np.ndarray]] = []
    objects: list[ObjectTruth] = []
    spare = [lab for lab in ("chair", "box", "nightstand") for _ in range(4)]
    for label in labels + spare:
        if len(objects) == num_objects:
            break
        box = _place(label, rng, room, placed, path_xy)
        if box is None:
            continue
        used = {o.color for o in objects if o.label == label}
        color = str(rng.choice([c for c in COLORS if c not in used] or list(COLORS)))
        objects.append(ObjectTruth(len(objects), label, CATEGORIES[label].nyu40_id, color, COLORS[color], box))
    if len(objects) < cfg.min_objects:
        raise RuntimeError(f"{scene}: placed only {len(objects)} of {cfg.min_objects} objects; use fewer objects")
    return SceneTruth(scene=scene, split=split, room=room, objects=objects, axis_align=axis_align.tolist())


def scene_names(cfg: SyntheticConfig) -> dict[str, list[str]]:
    """Split -> scene ids, numbered consecutively train, val, test: scene0000_00, scene0001_00, ..."""
    counts = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    names, start = {}, 0
    for split in SPLITS:
        names[split] = [f"scene{start + i:04d}_00" for i in range(counts[split])]
        start += counts[split]
    return names


def truth_path(root: str | Path) -> Path:
    return Path(root) / TRUTH_FILE


def load_truth(root: str | Path) -> list[SceneTruth]:
    """Read back ``<root>/synthetic_truth.json`` written by synthesize_scenes."""
    path = truth_path(root)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no synthetic truth; run `vega3d data synth` on this root first")
    return [SceneTruth.from_dict(d) for d in json.loads(path.read_text())]


# --- geometry of a scene ----------------------------------------------------------------------------------------


def room_geometry(truth: SceneTruth) -> RoomGeometry:
    """The renderable room and boxes of a scene (aligned frame)."""
    boxes = np.array([o.box for o in truth.objects], dtype=np.float64).reshape(-1, 6)
    half_room = np.array(truth.room[:2]) / 2.0
    return RoomGeometry(
        room_lo=np.array([-half_room[0], -half_room[1], 0.0]),
        room_hi=np.array([half_room[0], half_room[1], truth.room[2]]),
        box_lo=boxes[:, :3] - boxes[:, 3:] / 2,
        box_hi=boxes[:, :3] + boxes[:, 3:] / 2,
        box_rgb=np.array([o.rgb for o in truth.objects], dtype=np.uint8).reshape(-1, 3),
    )


def depth_intrinsic(cfg: SyntheticConfig) -> np.ndarray:
    """ScanNet-like pinhole intrinsics scaled to the frame size: [4, 4]."""
    k = np.eye(4)
    k[0, 0] = k[1, 1] = SCANNET_FX_640 * cfg.width / 640.0
    k[0, 2], k[1, 2] = (cfg.width - 1) / 2.0, (cfg.height - 1) / 2.0
    return k


def _grid_patch(origin: np.ndarray, edge_u: np.ndarray, edge_v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices [n_u * n_v, 3] and triangles [2 (n_u-1)(n_v-1), 3] of a rectangle sampled every MESH_SPACING."""
    n_u = max(2, math.ceil(np.linalg.norm(edge_u) / MESH_SPACING) + 1)
    n_v = max(2, math.ceil(np.linalg.norm(edge_v) / MESH_SPACING) + 1)
    s, t = np.meshgrid(np.linspace(0, 1, n_u), np.linspace(0, 1, n_v), indexing="ij")
    vertices = origin + s.reshape(-1, 1) * edge_u + t.reshape(-1, 1) * edge_v
    idx = np.arange(n_u * n_v).reshape(n_u, n_v)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return vertices, faces


def _box_patches(lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The six faces of a box as (origin, edge_u, edge_v)."""
    size = hi - lo
    ex, ey, ez = np.diag(size)
    return [(lo, ey, ez), (lo + ex, ey, ez), (lo, ex, ez), (lo + ey, ex, ez), (lo, ex, ey), (lo + ez, ex, ey)]


def _room_patches(geometry: RoomGeometry) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Floor and walls cut into tiles of about 1 m (one segment each)."""
    lo, hi = geometry.room_lo, geometry.room_hi
    size = hi - lo
    patches = []
    nx, ny = max(1, round(size[0])), max(1, round(size[1]))
    for i in range(nx):
        for j in range(ny):
            patches.append((lo + [i * size[0] / nx, j * size[1] / ny, 0], [size[0] / nx, 0, 0], [0, size[1] / ny, 0]))
    for i in range(nx):
        for y in (lo[1], hi[1]):
            patches.append((np.array([lo[0] + i * size[0] / nx, y, 0]), [size[0] / nx, 0, 0], [0, 0, size[2]]))
    for j in range(ny):
        for x in (lo[0], hi[0]):
            patches.append((np.array([x, lo[1] + j * size[1] / ny, 0]), [0, size[1] / ny, 0], [0, 0, size[2]]))
    return [(np.asarray(o, float), np.asarray(u, float), np.asarray(v, float)) for o, u, v in patches]


@dataclass
class SceneMesh:
    """Mesh of a scene in the ALIGNED frame with per-vertex segment and objectId (-1 = room)."""

    vertices: np.ndarray  # [N, 3] float64
    colors: np.ndarray  # [N, 3] uint8
    faces: np.ndarray  # [F, 3] int32
    segments: np.ndarray  # [N] int64
    instance: np.ndarray  # [N] int64


def scene_mesh(truth: SceneTruth) -> SceneMesh:
    """Sample every box face and the room's floor/walls into a triangle mesh, one segment per patch."""
    geometry = room_geometry(truth)
    parts = [(p, -1, geometry.wall_rgb if p[1][2] or p[2][2] else geometry.floor_rgb) for p in _room_patches(geometry)]
    for b in range(len(geometry.box_lo)):
        rgb = tuple(int(c) for c in geometry.box_rgb[b])
        parts += [(p, b, rgb) for p in _box_patches(geometry.box_lo[b], geometry.box_hi[b])]
    vertices, colors, faces, segments, instance, offset = [], [], [], [], [], 0
    for segment, ((origin, edge_u, edge_v), object_id, rgb) in enumerate(parts):
        verts, tris = _grid_patch(origin, edge_u, edge_v)
        vertices.append(verts)
        faces.append(tris + offset)
        colors.append(np.tile(np.array(rgb, dtype=np.uint8), (len(verts), 1)))
        segments.append(np.full(len(verts), segment, dtype=np.int64))
        instance.append(np.full(len(verts), object_id, dtype=np.int64))
        offset += len(verts)
    return SceneMesh(np.concatenate(vertices), np.concatenate(colors), np.concatenate(faces).astype(np.int32),
                     np.concatenate(segments), np.concatenate(instance))


def predicted_masks(mesh: SceneMesh, truth: SceneTruth, rng: np.random.Generator) -> sp.csr_matrix:
    """Jittered copies of the true instance masks (10% of vertices dropped, a fringe of neighbours added)
    plus 2-3 spurious masks on room segments, shuffled: bool [num_masks, num_vertices]."""
    rows = []
    for obj in truth.objects:
        box = np.asarray(obj.box)
        member = mesh.instance == obj.object_id
        keep = member & (rng.random(len(member)) > 0.1)
        near = (np.abs(mesh.vertices - box[:3]) <= box[3:] / 2 + 0.08).all(axis=1) & ~member
        rows.append(keep | (near & (rng.random(len(member)) < 0.5)))
    room_segments = np.unique(mesh.segments[mesh.instance < 0])
    for segment in rng.choice(room_segments, size=int(rng.integers(2, 4)), replace=False):
        rows.append((mesh.segments == segment) & (rng.random(len(mesh.segments)) < 0.6))
    masks = np.stack(rows)[rng.permutation(len(rows))]
    return sp.csr_matrix(masks)


# --- writing ------------------------------------------------------------------------------------------------------


def _to_raw(axis_align: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Aligned points [N, 3] -> raw scan frame."""
    inverse = np.linalg.inv(axis_align)
    return points @ inverse[:3, :3].T + inverse[:3, 3]


def write_scene(layout: DataLayout, truth: SceneTruth, cfg: SyntheticConfig, seed: int) -> dict:
    """Render and write every raw file of one scene; returns its EmbodiedScan info entry."""
    scene = truth.scene
    rng = np.random.default_rng([seed, scene_number(scene), 1])
    axis_align = np.asarray(truth.axis_align)
    geometry = room_geometry(truth)
    intrinsic = depth_intrinsic(cfg)
    poses_aligned = camera_trajectory(truth.room, cfg.frames)
    poses_raw = np.linalg.inv(axis_align) @ poses_aligned  # [V, 4, 4]
    frame_ids = [i * FRAME_STRIDE for i in range(cfg.frames)]
    for frame_id, pose_aligned, pose_raw in zip(frame_ids, poses_aligned, poses_raw, strict=True):
        rgb, depth, _ = render(geometry, pose_aligned, intrinsic, cfg.height, cfg.width, MAX_DEPTH_M)
        hit = np.isfinite(depth)  # rays that hit nothing are invalid depth (0), never an undefined cast
        depth_mm = np.where(hit, np.rint(np.where(hit, depth, 0.0) * 1000.0), 0.0).astype(np.uint16)
        depth_mm[rng.random(depth_mm.shape) < DEPTH_DROPOUT] = 0
        scannet.write_color(layout.color_path(scene, frame_id), rgb)
        scannet.write_depth_mm(layout.depth_path(scene, frame_id), depth_mm)
        scannet.write_matrix(layout.pose_path(scene, frame_id), pose_raw)
    scannet.write_matrix(layout.intrinsic_path(scene), intrinsic)
    scannet.write_matrix(layout.depth_intrinsic_path(scene), intrinsic)
    scannet.write_scan_meta(
        layout.scan_meta_path(scene), axis_align,
        {"colorWidth": str(cfg.width), "colorHeight": str(cfg.height), "numColorFrames": str(cfg.frames * FRAME_STRIDE),
         "sceneType": "Synthetic"},
    )
    mesh = scene_mesh(truth)
    raw_vertices = _to_raw(axis_align, mesh.vertices).astype(np.float32)
    scannet.write_mesh(layout.mesh_path(scene), scannet.Mesh(raw_vertices, mesh.colors, mesh.faces))
    scannet.write_segments(layout.segs_path(scene), scene, mesh.segments)
    object_segments = [np.unique(mesh.segments[mesh.instance == o.object_id]).tolist() for o in truth.objects]
    scannet.write_aggregation(
        layout.aggregation_path(scene), scene,
        scannet.Aggregation([o.object_id for o in truth.objects], [o.label for o in truth.objects], object_segments),
    )
    scannet.write_masks(layout.mask_path(scene), predicted_masks(mesh, truth, rng))
    return embodiedscan.scene_info(scene, frame_ids, poses_raw, axis_align, intrinsic, intrinsic)


def write_label_map(layout: DataLayout) -> None:
    """ScanNet's ``scannetv2-labels.combined.tsv`` (its leading columns) for the synthetic labels."""
    rows = [f"{k + 1}\t{label}\t{label}\t{cat.nyu40_id}\t{label}\n" for k, (label, cat) in enumerate(CATEGORIES.items())]
    write_text(str(layout.label_map_path()), "id\traw_category\tcategory\tnyu40id\tnyu40class\n" + "".join(rows))


def synthesize_scenes(root: str | Path, cfg: SyntheticConfig) -> list[SceneTruth]:
    """Write a whole synthetic data root (scenes, split lists, EmbodiedScan infos, truth); returns the truth."""
    layout = DataLayout(root)
    names = scene_names(cfg)
    truths: list[SceneTruth] = []
    infos: dict[str, list[dict]] = {split: [] for split in SPLITS}
    jobs = [(split, scene) for split in SPLITS for scene in names[split]]
    for split, scene in progress_bar(jobs, desc="synthesising scenes", unit="scene"):
        truth = scene_truth(scene, split, cfg.seed, cfg)
        infos[split].append(write_scene(layout, truth, cfg, cfg.seed))
        truths.append(truth)
    for split in SPLITS:
        write_text(str(layout.split_file_path(split)), "".join(f"{s}\n" for s in names[split]))
        embodiedscan.write_infos(layout.embodiedscan_info_path(split), infos[split])
    write_label_map(layout)
    write_json(str(truth_path(root)), [asdict(t) for t in truths], indent=1)
    logger.info("synthesised %d scenes under %s", len(truths), root)
    return truths
