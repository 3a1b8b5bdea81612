"""A scene's posed RGB-D frames loaded from ``scannet/posed_images`` (SPEC.md sections 1 and 5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vega3d.data.errors import DataFileError
from vega3d.data.frame_lists import prepared_frame_ids
from vega3d.data.layout import DataLayout
from vega3d.data.scannet import read_axis_alignment, read_color, read_depth, read_matrix, read_pose


@dataclass
class SceneFrames:
    """Frames of one scene, in the order asked for."""

    scene: str
    frame_ids: list[int]
    rgb: np.ndarray  # [V, H, W, 3] uint8 (resized to the depth resolution when the colour camera differs)
    depth: np.ndarray  # [V, H, W] float32 metres, 0 = invalid
    cam2world: np.ndarray  # [V, 4, 4] float64, raw scan frame, OpenCV axes
    depth_intrinsic: np.ndarray  # [4, 4] float64
    axis_align: np.ndarray  # [4, 4] float64, raw -> aligned


def scene_frame_ids(layout: DataLayout, scene: str) -> list[int]:
    """The scene's usable frame numbers (every 10th sensor frame: 0, 10, 20, ...), sorted.

    The list prep wrote to ``metadata/scannet_frame_lists.json`` (invalid frames excluded) when there is one,
    otherwise every ``NNNNN.jpg`` in ``posed_images/<scene>``.
    """
    prepared = prepared_frame_ids(layout, scene)
    if prepared:
        return prepared
    folder = layout.posed_images_dir(scene)
    if not folder.is_dir():
        raise DataFileError(folder, "scene folder not found", f"synthesise or download posed_images for {scene}")
    ids = sorted(int(p.stem) for p in folder.glob("*.jpg") if p.stem.isdigit())
    if not ids:
        raise DataFileError(folder, "no NNNNN.jpg frames", f"re-export the posed images of {scene}")
    return ids


def _resize_rgb(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [h, w, 3] -> [height, width, 3] (bilinear), unchanged when the size already matches."""
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))


def load_scene_frames(layout: DataLayout, scene: str, frame_ids: Sequence[int]) -> SceneFrames:
    """Read colour, depth and pose of the given frames plus the scene's depth intrinsics and axis alignment.

    Raises DataFileError naming the first missing or invalid file.
    """
    frame_ids = [int(f) for f in frame_ids]
    if not frame_ids:
        raise ValueError(f"{scene}: no frames asked for")
    depth_intrinsic = read_matrix(layout.depth_intrinsic_path(scene), fix=f"re-export the intrinsics of {scene}")
    axis_align = read_axis_alignment(layout.scan_meta_path(scene))
    depths = [read_depth(layout.depth_path(scene, f)) for f in frame_ids]
    height, width = depths[0].shape
    for f, depth in zip(frame_ids, depths, strict=True):
        if depth.shape != (height, width):
            raise DataFileError(
                layout.depth_path(scene, f), f"depth is {depth.shape}, other frames are {(height, width)}",
                "re-export the frame at the scene's depth resolution",
            )
    rgb = np.stack([_resize_rgb(read_color(layout.color_path(scene, f)), height, width) for f in frame_ids])
    poses = np.stack([read_pose(layout.pose_path(scene, f)) for f in frame_ids])
    return SceneFrames(
        scene=scene,
        frame_ids=frame_ids,
        rgb=rgb,
        depth=np.stack(depths),
        cam2world=poses,
        depth_intrinsic=depth_intrinsic,
        axis_align=axis_align,
    )
