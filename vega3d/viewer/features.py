"""Pictures of generative features: PCA-to-RGB maps, cross-view correspondence, the multi-view consistency score.

Features are the encoder's pooled grids ``[V, C, g, g]`` of one scene's frames (``GenerativeEncoder.encode``
or the offline feature store); with ``generative.crop = same`` cell (i, j) covers the same image region in
every branch, so a cell's 3D position is the mean world coordinate of its pixels.

- **PCA map** (``pca_rgb``): one PCA over every cell of every frame (so colours compare across views); the
  first three principal components, each min-max scaled over all cells, are R, G, B. A component whose
  singular value is below ``1e-6`` of the first carries no signal and is drawn as a constant 0.5: features
  spanning two directions give exactly two colours.
- **Correspondence** (``correspondence``): the cosine similarity of one query cell's feature with every cell of
  every frame; its peak in another view is where the encoder thinks the query's surface is.
- **Multi-view consistency** (``consistency_score``), the quantity the paper's correspondence analysis
  compares backbones by (which backbones keep one 3D point's features alike across changing viewpoints).
  Ground-truth matches come from geometry (``cell_matches``): a cell's 3D point is the mean aligned world
  coordinate of its valid pixels; projected into another frame with that frame's pose and depth intrinsics,
  it matches the cell it lands in when it is in view and not occluded (the depth there within 0.1 m of the
  point's). Over every match (cell a of frame u, its match m of frame v):

      consistency = mean cos(f_a, f_m)  -  mean cos(f_a, f_b) over the other cells b of frame v

  i.e. how much more similar a 3D point's features are across two views than to the rest of the other view.
  0 for features that ignore geometry (constant, random), up to 2; undefined (an error) without any match.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

logger = logging.getLogger(__name__)

SILENT_COMPONENT = 1e-6
PICTURE_SCENES = 2  # scenes the extract step draws


def _tokens(features: np.ndarray) -> np.ndarray:
    """[V, C, g, g] -> [V * g * g, C] float64 (frame-major, then row, then column)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 4:
        raise ValueError(f"features must be [V, C, g, g], got shape {features.shape}")
    return features.transpose(0, 2, 3, 1).reshape(-1, features.shape[1])


def pca_rgb(features: np.ndarray) -> np.ndarray:
    """[V, C, g, g] features -> [V, g, g, 3] uint8 colours of their first three principal components."""
    tokens = _tokens(features)
    centred = tokens - tokens.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    rgb = np.full((len(tokens), 3), 0.5)
    for k in range(min(3, len(singular))):
        if singular[k] <= SILENT_COMPONENT * max(singular[0], 1e-30):
            continue
        values = centred @ vt[k]
        rgb[:, k] = (values - values.min()) / max(values.max() - values.min(), 1e-30)
    v, _, g, _ = np.shape(features)
    return np.rint(rgb * 255).astype(np.uint8).reshape(v, g, g, 3)


def _unit(tokens: np.ndarray) -> np.ndarray:
    return tokens / np.maximum(np.linalg.norm(tokens, axis=-1, keepdims=True), 1e-12)


def correspondence(features: np.ndarray, frame: int, cell: tuple[int, int]) -> np.ndarray:
    """Cosine similarity [V, g, g] of cell ``(row, col)`` of ``frame`` with every cell of every frame."""
    v, _, g, _ = np.shape(features)
    row, col = cell
    if not (0 <= frame < v and 0 <= row < g and 0 <= col < g):
        raise ValueError(f"patch ({frame}, {row}, {col}) is outside {v} frames of {g}x{g} cells")
    unit = _unit(_tokens(features))
    query = unit[(frame * g + row) * g + col]
    return (unit @ query).reshape(v, g, g)


@dataclass(frozen=True)
class Consistency:
    """The multi-view consistency score and its two parts (module docstring)."""

    score: float
    matched_similarity: float
    other_similarity: float
    matched_pairs: int
    other_pairs: int


def consistency_score(features: np.ndarray, matches: np.ndarray) -> Consistency:
    """Consistency of features [V, C, g, g] given matches [K, 4] = (frame u, cell a, frame v, cell m), cells
    numbered row * g + col (module docstring)."""
    v, channels, g, _ = np.shape(features)
    matches = np.asarray(matches, dtype=np.int64).reshape(-1, 4)
    if len(matches) == 0:
        raise ValueError("no cell is seen by two frames: pick frames that overlap (closer frame ids)")
    unit = _unit(_tokens(features)).reshape(v, g * g, channels)
    matched, others = [], []
    for u, a, w, m in matches:
        similarity = unit[w] @ unit[u, a]  # [g * g]
        matched.append(similarity[m])
        others.append(np.delete(similarity, m))
    same, other = float(np.mean(matched)), float(np.mean(np.concatenate(others)))
    return Consistency(same - other, same, other, len(matched), sum(len(o) for o in others))


def cell_matches(coords: np.ndarray, valid: np.ndarray, depth: np.ndarray, depth_intrinsic: np.ndarray,
                 cam2world: np.ndarray, axis_align: np.ndarray, tolerance: float = 0.1) -> np.ndarray:
    """Matches [K, 4] (frame u, cell a, frame v, cell m) of cells' 3D points [V, g, g, 3] seen in other frames.

    A point is seen in frame v when it projects inside the image in front of the camera and the depth there is
    valid and within ``tolerance`` metres of the point's own depth (not occluded).
    """
    views, g = coords.shape[0], coords.shape[1]
    height, width = depth.shape[1:]
    fx, fy, cx, cy = depth_intrinsic[0, 0], depth_intrinsic[1, 1], depth_intrinsic[0, 2], depth_intrinsic[1, 2]
    flat = coords.reshape(views, g * g, 3).astype(np.float64)
    flat_valid = valid.reshape(views, g * g)
    found = []
    for w in range(views):
        world_to_camera = np.linalg.inv(axis_align @ cam2world[w])
        for u in range(views):
            if u == w:
                continue
            cells = np.flatnonzero(flat_valid[u])
            camera = flat[u, cells] @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
            z = camera[:, 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                px, py = fx * camera[:, 0] / z + cx, fy * camera[:, 1] / z + cy
            inside = (z > 0) & (px >= 0) & (px < width) & (py >= 0) & (py < height)
            cells, z, px, py = cells[inside], z[inside], px[inside].astype(int), py[inside].astype(int)
            seen = depth[w, py, px]
            visible = (seen > 0) & (np.abs(seen - z) < tolerance)
            target = (py * g // height) * g + px * g // width
            found.extend((u, a, w, m) for a, m in zip(cells[visible], target[visible], strict=True))
    return np.asarray(found, dtype=np.int64).reshape(-1, 4)


def cell_world_coordinates(world: np.ndarray, valid: np.ndarray, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel world map [V, H, W, 3] + valid [V, H, W] -> mean world position of each cell [V, g, g, 3], valid.

    The full frame is split into g x g cells (as the ``same`` crop squashes it); a cell without any valid
    pixel is invalid.
    """
    import torch
    import torch.nn.functional as F

    weight = torch.from_numpy(np.asarray(valid, dtype=np.float32)).unsqueeze(1)  # [V, 1, H, W]
    points = torch.from_numpy(np.asarray(world, dtype=np.float32)).permute(0, 3, 1, 2)  # [V, 3, H, W]
    count = F.adaptive_avg_pool2d(weight, grid)
    summed = F.adaptive_avg_pool2d(points * weight, grid)
    coords = (summed / count.clamp_min(1e-12)).permute(0, 2, 3, 1).numpy()
    return coords, count[:, 0].numpy() > 0


def _pyplot():
    """matplotlib.pyplot on the Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish(figure, title: str) -> bytes:
    """Title, tight layout, PNG bytes; the figure is closed."""
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    _pyplot().close(figure)
    return buffer.getvalue()


def pca_figure(frames: np.ndarray, colours: np.ndarray, title: str) -> bytes:
    """PNG: each frame [V, H, W, 3] uint8 beside its PCA map [V, g, g, 3] (nearest upsampling)."""
    rows = len(frames)
    figure, axes = _pyplot().subplots(rows, 2, figsize=(6, 2.6 * rows), squeeze=False)
    for k in range(rows):
        axes[k, 0].imshow(frames[k])
        axes[k, 1].imshow(colours[k], interpolation="nearest")
        axes[k, 0].set_title(f"frame {k}", fontsize=8)
        axes[k, 1].set_title("PCA of features", fontsize=8)
        for ax in axes[k]:
            ax.axis("off")
    return _finish(figure, title)


def correspondence_figure(frames: np.ndarray, heat: np.ndarray, frame: int, cell: tuple[int, int],
                          title: str) -> bytes:
    """PNG: every frame with the cosine-similarity heat map over it; the query cell outlined in its frame."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    views, height, width = frames.shape[:3]
    g = heat.shape[-1]
    figure, axes = plt.subplots(1, views, figsize=(2.8 * views, 2.6), squeeze=False)
    low, high = float(heat.min()), float(heat.max())  # one colour scale over all frames, min to max
    for k, ax in enumerate(axes[0]):
        ax.imshow(frames[k])
        ax.imshow(heat[k], cmap="jet", alpha=0.5, vmin=low, vmax=max(high, low + 1e-6), extent=(0, width, height, 0),
                  interpolation="nearest")
        if k == frame:
            ax.add_patch(Rectangle((cell[1] * width / g, cell[0] * height / g), width / g, height / g,
                                   fill=False, edgecolor="white", linewidth=2))
        peak = np.unravel_index(np.argmax(heat[k]), heat[k].shape)
        ax.set_title(f"frame {k}" + (" (query)" if k == frame else f" peak {tuple(int(p) for p in peak)}"),
                     fontsize=8)
        ax.axis("off")
    return _finish(figure, title)


@dataclass(frozen=True)
class FeaturePictures:
    """The pictures and the score of one scene's features."""

    pca_png: bytes
    correspondence_png: bytes
    consistency: Consistency
    query: tuple[int, int, int]  # frame, row, col

    def summary(self) -> dict:
        """JSON-ready: the score and its parts, the query cell."""
        return {**asdict(self.consistency), "query": list(self.query)}


def feature_pictures(frames, features: np.ndarray, label: str, query: tuple[int, int, int] | None = None
                     ) -> FeaturePictures:
    """PCA map, correspondence picture and consistency score of a scene's frames (``SceneFrames``: colour,
    depth, poses) and their features [V, C, g, g]; the default query is the centre cell of frame 0."""
    from vega3d.data.geometry import world_coordinates

    g = np.shape(features)[-1]
    query = query or (0, g // 2, g // 2)
    world, valid = world_coordinates(frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align)
    coords, cell_valid = cell_world_coordinates(world, valid, g)
    matches = cell_matches(coords, cell_valid, frames.depth, frames.depth_intrinsic, frames.cam2world,
                           frames.axis_align)
    score = consistency_score(features, matches)
    heat = correspondence(features, query[0], (query[1], query[2]))
    return FeaturePictures(
        pca_png=pca_figure(frames.rgb, pca_rgb(features), f"{label}: PCA of the feature grid"),
        correspondence_png=correspondence_figure(
            frames.rgb, heat, query[0], (query[1], query[2]),
            f"{label}: cosine similarity to cell {query[1:]} of frame {query[0]} "
            f"({heat.min():.2f} blue to {heat.max():.2f} red); consistency {score.score:.3f}"),
        consistency=score,
        query=tuple(int(q) for q in query),
    )


def write_pictures(pictures: FeaturePictures, folder: str, stem: str) -> list[str]:
    """Write ``<stem>_pca.png``, ``<stem>_correspondence.png`` and ``<stem>_consistency.json`` under a folder/URI."""
    from vega3d import storage

    paths = [storage.join(folder, f"{stem}_pca.png"), storage.join(folder, f"{stem}_correspondence.png"),
             storage.join(folder, f"{stem}_consistency.json")]
    storage.write_bytes(paths[0], pictures.pca_png)
    storage.write_bytes(paths[1], pictures.correspondence_png)
    storage.write_json(paths[2], pictures.summary(), indent=2)
    return paths


def picture_frames(layout, scene: str, sampling: str, budget: int, count: int) -> tuple[list[int], list[int]]:
    """(sampled frame list of the scene, positions in it of its first ``count`` distinct frames)."""
    from vega3d.data.sampling import sample_frame_ids

    frames = sample_frame_ids(layout, scene, sampling, budget)
    first = {}
    for position, frame in enumerate(frames):
        first.setdefault(frame, position)
    return frames, list(first.values())[:count]


def encoder_pictures(cfg, encoder, scene: str, count: int = 4, query: tuple[int, int, int] | None = None
                     ) -> FeaturePictures:
    """Encode ``count`` frames of a scene (path-resolved config) and draw its feature pictures."""
    from vega3d.data.frames import load_scene_frames
    from vega3d.data.layout import DataLayout
    from vega3d.generative.extract import frames_tensor

    layout = DataLayout(cfg.data.root)
    frames, positions = picture_frames(layout, scene, cfg.data.sampling, cfg.data.frames_upbound, count)
    frame_ids = [frames[p] for p in positions]
    features = encoder.encode(frames_tensor(layout, scene, frame_ids), scene, frame_ids).cpu().numpy()
    return feature_pictures(load_scene_frames(layout, scene, frame_ids), features, f"{encoder.encoder_id} {scene}",
                            query)


def stored_pictures(cfg, store_uri: str, feature_id: str, scene: str, count: int = 4,
                    query: tuple[int, int, int] | None = None) -> FeaturePictures:
    """The pictures of features read from the offline store (any feature id, offline-only encoders too): those
    of the scene's sampled frame list (``data.sampling``, ``data.frames_upbound``), first ``count`` frames."""
    from vega3d.data.frames import load_scene_frames
    from vega3d.data.layout import DataLayout
    from vega3d.generative.store import FeatureStore, feature_key

    layout = DataLayout(cfg.data.root)
    frames, positions = picture_frames(layout, scene, cfg.data.sampling, cfg.data.frames_upbound, count)
    features, _ = FeatureStore(store_uri).load(feature_key(feature_id, scene, frames))
    return feature_pictures(load_scene_frames(layout, scene, [frames[p] for p in positions]),
                            features.numpy()[positions], f"{feature_id} {scene}", query)


def log_extract_pictures(tracker, run_id: str | None, cfg, store_uri: str, feature_id: str,
                         scenes: Sequence[str] | None = None) -> dict[str, float]:
    """The extract step's pictures on an MLflow run (``features/<scene>_<encoder>_*``), drawn from the features
    it has just stored: by default of the first ``PICTURE_SCENES`` val scenes. Logs and returns
    ``features/<scene>/consistency`` per scene; a scene whose frames do not overlap is skipped with a warning."""
    import tempfile
    from pathlib import Path

    from vega3d.data.layout import DataLayout
    from vega3d.generative.extract import split_scenes

    scores: dict[str, float] = {}
    if run_id is None or not tracker.enabled:
        return scores
    scenes = list(scenes) if scenes is not None else split_scenes(DataLayout(cfg.data.root), ["val"])[:PICTURE_SCENES]
    with tempfile.TemporaryDirectory() as folder:
        for scene in scenes:
            try:
                pictures = stored_pictures(cfg, store_uri, feature_id, scene)
            except ValueError as error:
                logger.warning("%s: no feature pictures (%s)", scene, error)
                continue
            for path in write_pictures(pictures, folder, f"{scene}_{cfg.generative.backbone}"):
                tracker.log_artifact(run_id, Path(path), "features")
            scores[f"features/{scene}/consistency"] = pictures.consistency.score
    tracker.log_metrics(run_id, scores)
    return scores
