"""EmbodiedScan info files ``embodiedscan/embodiedscan_infos_{split}.pkl`` (SPEC.md section 5).

Layout: ``{"metainfo": {...}, "data_list": [entry, ...]}`` with one entry per scene::

    {"sample_idx": "scannet/<scene>",
     "images": [{"img_path": "scannet/posed_images/<scene>/00000.jpg", "depth_path": ".../00000.png",
                 "cam2global": [4, 4] ndarray (raw scan frame)}, ...],
     "axis_align_matrix": [4, 4], "depth_cam2img": [4, 4], "cam2img": [4, 4]}

Files are read through the restricted pickle loader (they come from third parties).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vega3d.data import safe_pickle
from vega3d.data.errors import DataFileError
from vega3d.data.layout import frame_name, scene_of, video_id
from vega3d.storage import write_bytes

METAINFO = {"dataset": "scannet", "info_version": "1.0", "source": "vega3d"}


def scene_info(
    scene: str, frame_ids: Sequence[int], cam2global: np.ndarray, axis_align: np.ndarray,
    depth_cam2img: np.ndarray, cam2img: np.ndarray,
) -> dict:
    """The data_list entry of one scene; ``cam2global`` is [V, 4, 4] in the raw scan frame."""
    folder = f"scannet/posed_images/{scene}"
    images = [
        {"img_path": f"{folder}/{frame_name(f)}.jpg", "depth_path": f"{folder}/{frame_name(f)}.png",
         "cam2global": np.asarray(pose, dtype=np.float64)}
        for f, pose in zip(frame_ids, cam2global, strict=True)
    ]
    return {
        "sample_idx": video_id(scene),
        "images": images,
        "axis_align_matrix": np.asarray(axis_align, dtype=np.float64),
        "depth_cam2img": np.asarray(depth_cam2img, dtype=np.float64),
        "cam2img": np.asarray(cam2img, dtype=np.float64),
    }


def write_infos(path: str | Path, data_list: list[dict], metainfo: dict | None = None) -> None:
    """Pickle ``{"metainfo", "data_list"}`` atomically."""
    payload = {"metainfo": dict(metainfo or METAINFO), "data_list": list(data_list)}
    write_bytes(str(path), pickle.dumps(payload, protocol=4))


def read_infos(path: str | Path) -> dict:
    """Load and validate an info file with the restricted loader."""
    infos = safe_pickle.load(path)
    if not isinstance(infos, dict) or not isinstance(infos.get("data_list"), list):
        raise DataFileError(path, "expected a dict with a 'data_list' list", "re-download the EmbodiedScan infos")
    for index, entry in enumerate(infos["data_list"]):
        if not isinstance(entry, dict):
            raise DataFileError(path, f"data_list[{index}] is a {type(entry).__name__}, not a dict",
                                "re-download the EmbodiedScan infos")
        missing = {"sample_idx", "images", "axis_align_matrix"} - set(entry)
        if missing:
            raise DataFileError(path, f"data_list[{index}] lacks {sorted(missing)}", "re-download the EmbodiedScan infos")
    return infos


def infos_by_scene(infos: dict) -> dict[str, dict]:
    """Scene id -> data_list entry."""
    return {scene_of(entry["sample_idx"]): entry for entry in infos["data_list"]}
