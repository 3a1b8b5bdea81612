"""Frame sampling per sample (SPEC.md section 1): ``uniform``, ``max-coverage`` and ``mc-ratio95``.

max-coverage is a greedy set cover over candidate frames (every 2nd frame of the list, all when that gives
fewer than the budget): each frame's voxel set V_f (its valid back-projected depth, 0.1 m voxels) is
intersected with the scene's voxel set P; the frame covering most not-yet-covered voxels is picked next
until the budget is spent. Frames x voxels is one scipy.sparse matrix, so every greedy step is a sparse
matrix-vector product. Picks are stored in greedy order in ``metadata/scannet_select_frames.json``
(video_id, frame_files, voxel_nums, num_all_voxels, num_select_voxels); sampling re-sorts them by frame number.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from vega3d.data.frames import load_scene_frames, scene_frame_ids
from vega3d.data.geometry import VoxelGrid, unique_voxels, world_coordinates_and_voxels
from vega3d.data.layout import DataLayout, frame_name, video_id
from vega3d.storage import read_json

logger = logging.getLogger(__name__)

STRATEGIES = ("uniform", "max-coverage", "mc-ratio95")
MC_RATIO = 0.95
PAPER_FRAMES = 32


def selection_budget(frames_upbound: int) -> int:
    """Greedy picks stored per scene: at least the paper's 32, so any frames_upbound up to it reads a prefix."""
    return max(frames_upbound, PAPER_FRAMES)


def uniform_indices(num_frames: int, budget: int) -> list[int]:
    """``int(linspace(0, T-1, budget))``: evenly spread indices, with duplicates when T < budget."""
    if num_frames < 1 or budget < 1:
        raise ValueError(f"need num_frames >= 1 and budget >= 1, got {num_frames} and {budget}")
    return [int(i) for i in np.linspace(0, num_frames - 1, budget)]


def candidate_indices(num_frames: int, budget: int) -> list[int]:
    """Every 2nd frame index; all frames when every 2nd would give fewer than ``budget``."""
    every_second = list(range(0, num_frames, 2))
    return every_second if len(every_second) >= budget else list(range(num_frames))


@dataclass
class CoverageResult:
    """Greedy picks: ``indices`` into the frame list in pick order, ``gains`` = new voxels each pick added,
    ``num_all_voxels`` = |(∪ V_f) ∩ P|."""

    indices: list[int]
    gains: list[int]
    num_all_voxels: int


def coverage_matrix(frame_voxels: Sequence[np.ndarray], scene_voxels: np.ndarray) -> sp.csr_matrix:
    """Frames x scene voxels incidence (V_f ∩ P): bool CSR [num_frames, |P|], columns = sorted unique P."""
    scene = unique_voxels(scene_voxels)
    if len(scene) == 0:
        return sp.csr_matrix((len(frame_voxels), 0), dtype=bool)
    grid = VoxelGrid.around(scene)
    column = np.full(grid.size, -1, dtype=np.int64)  # grid cell -> column of P (or -1)
    column[grid.encode(scene)] = np.arange(len(scene))
    rows, cols = [], []
    for f, voxels in enumerate(frame_voxels):
        voxels = np.asarray(voxels, dtype=np.int64).reshape(-1, 3)
        hit = column[grid.encode(voxels[grid.contains(voxels)])]
        hit = np.unique(hit[hit >= 0])
        cols.append(hit)
        rows.append(np.full(len(hit), f, dtype=np.int64))
    data = np.ones(sum(len(c) for c in cols), dtype=bool)
    return sp.csr_matrix((data, (np.concatenate(rows), np.concatenate(cols))), shape=(len(frame_voxels), len(scene)))


def max_coverage(
    frame_voxels: Sequence[np.ndarray], scene_voxels: np.ndarray, budget: int, ratio: float | None = None
) -> CoverageResult:
    """Greedy max-coverage over frames.

    Args:
        frame_voxels: per candidate frame, its voxel set [M_f, 3] int.
        scene_voxels: the scene's voxel set P [P, 3] int.
        budget: most picks (fewer when there are fewer frames).
        ratio: when given, stop as soon as the cumulative gain reaches ratio * num_all_voxels.

    Ties go to the earliest frame. After full coverage, later picks have gain 0 (still earliest first).
    """
    matrix = coverage_matrix(frame_voxels, scene_voxels).astype(np.int32)  # [F, |P|]
    num_frames = matrix.shape[0]
    uncovered = np.asarray(matrix.sum(axis=0)).ravel() > 0  # [|P|] reachable voxels
    num_all = int(uncovered.sum())
    picked = np.zeros(num_frames, dtype=bool)
    indices: list[int] = []
    gains: list[int] = []
    total = 0
    for _ in range(min(budget, num_frames)):
        gain = matrix @ uncovered.astype(np.int32)  # [F] new voxels per frame
        gain[picked] = -1
        best = int(np.argmax(gain))
        picked[best] = True
        indices.append(best)
        gains.append(int(gain[best]))
        total += int(gain[best])
        uncovered[matrix.indices[matrix.indptr[best]:matrix.indptr[best + 1]]] = False
        if ratio is not None and total >= ratio * num_all:
            break
    return CoverageResult(indices=indices, gains=gains, num_all_voxels=num_all)


def frame_file(scene: str, frame_id: int) -> str:
    """Data-root relative colour path of a frame, as stored in selections and EmbodiedScan infos."""
    return f"scannet/posed_images/{scene}/{frame_name(frame_id)}.jpg"


def frame_id_of(path: str) -> int:
    """``.../00020.jpg`` -> 20."""
    return int(Path(path).stem)


def scene_frame_voxels(
    layout: DataLayout, scene: str, frame_ids: Sequence[int], voxel_size: float = 0.1, chunk: int = 16,
    mask_invalid: bool = True,
) -> list[np.ndarray]:
    """Voxel set of each frame (valid depth only unless ``mask_invalid`` is False), read in chunks."""
    voxels: list[np.ndarray] = []
    for start in range(0, len(frame_ids), chunk):
        frames = load_scene_frames(layout, scene, frame_ids[start:start + chunk])
        voxels += world_coordinates_and_voxels(
            frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align, voxel_size, mask_invalid
        )[2]
    return voxels


def coverage_selection(
    layout: DataLayout, scene: str, scene_voxels: np.ndarray, budget: int = 32, voxel_size: float = 0.1,
    frame_ids: Sequence[int] | None = None, mask_invalid: bool = True,
) -> dict:
    """The ``scannet_select_frames.json`` entry of a scene: greedy picks (up to ``budget``) over the candidates
    drawn from ``frame_ids`` (default: the scene's frame list)."""
    frame_ids = list(scene_frame_ids(layout, scene) if frame_ids is None else frame_ids)
    candidates = [frame_ids[i] for i in candidate_indices(len(frame_ids), budget)]
    voxels = scene_frame_voxels(layout, scene, candidates, voxel_size, mask_invalid=mask_invalid)
    result = max_coverage(voxels, scene_voxels, budget)
    return {
        "video_id": video_id(scene),
        "frame_files": [frame_file(scene, candidates[i]) for i in result.indices],
        "voxel_nums": result.gains,
        "num_all_voxels": result.num_all_voxels,
        "num_select_voxels": int(sum(result.gains)),
    }


def load_selections(layout: DataLayout, voxel_size: float = 0.1, budget: int = PAPER_FRAMES,
                    masked: bool = True) -> dict[str, dict]:
    """The frame selections prep made with these settings (``layout.select_frames_path``) as video_id -> entry."""
    path = layout.select_frames_path(voxel_size, budget, masked)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no frame selections for voxel size {voxel_size:g} and {budget} picks; "
                                "run `vega3d data prep` with these data settings")
    return {entry["video_id"]: entry for entry in read_json(str(path))}


def sample_frame_ids(
    layout: DataLayout, scene: str, strategy: str, budget: int, selections: dict | None = None,
    ratio: float = MC_RATIO,
) -> list[int]:
    """Frame numbers of one sample, sorted.

    uniform: ``uniform_indices`` over the scene's frame list (duplicates when it is short).
    max-coverage: the first ``budget`` greedy picks of the scene's selection entry.
    mc-ratio95: those picks cut where their cumulative gain reaches ``ratio`` of num_all_voxels.
    ``selections`` (video_id -> entry) defaults to the data root's scannet_select_frames.json.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown frame sampling {strategy!r}; choose one of {STRATEGIES}")
    if strategy == "uniform":
        frame_ids = scene_frame_ids(layout, scene)
        return [frame_ids[i] for i in uniform_indices(len(frame_ids), budget)]
    selections = load_selections(layout) if selections is None else selections
    entry = selections.get(video_id(scene))
    if entry is None:
        raise KeyError(f"{layout.root}: no frame selection for {video_id(scene)}; re-run `vega3d data prep`")
    files, gains = entry["frame_files"][:budget], entry["voxel_nums"][:budget]
    if strategy == "mc-ratio95":
        cumulative = np.cumsum(gains)
        reached = np.flatnonzero(cumulative >= ratio * entry["num_all_voxels"])
        files = files[: int(reached[0]) + 1] if len(reached) else files
    return sorted(frame_id_of(f) for f in files)
