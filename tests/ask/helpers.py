"""Helpers of the ask tests: prompts of processed records back to user text, scene paths, box frames."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from vega3d.ask.scene_inputs import NERFSTUDIO_FILE, OPENGL_TO_OPENCV
from vega3d.data import scannet
from vega3d.data.frames import scene_frame_ids
from vega3d.data.layout import DataLayout
from vega3d.data.records import GROUND_PROMPT, IMAGE_TOKEN, MULTI3DREFER_SUFFIX

QA_SUFFIX = " Answer the question simply."


def human_text(record: dict) -> str:
    """The first human turn without the ``<image>`` line."""
    return record["conversations"][0]["value"].removeprefix(f"{IMAGE_TOKEN}\n")


def question_of(record: dict) -> str:
    """The ScanQA question a user would type."""
    return human_text(record).removesuffix(QA_SUFFIX)


def description_of(record: dict) -> str:
    """The grounding description a user would type."""
    head = GROUND_PROMPT.split("{description}")[0]
    return human_text(record).removeprefix(head).removesuffix(MULTI3DREFER_SUFFIX)


def scene_dir(root: Path, scene: str) -> Path:
    """The ScanNet posed_images folder of a scene."""
    return Path(root) / "scannet" / "posed_images" / scene


def apply(matrix: np.ndarray, points) -> np.ndarray:
    """4x4 transform of [..., 3] points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def write_nerfstudio(layout: DataLayout, scene: str, out: str | Path, world: np.ndarray,
                     axis_alignment: np.ndarray | None = None) -> Path:
    """Export a ScanNet-layout scene as a nerfstudio capture whose world frame is ``world`` @ raw frame
    (``world`` [4, 4]), as a phone capture app would; colour files are copied byte for byte, depth stays uint16 mm;
    ``axis_alignment`` (input -> aligned) is stored when given. Returns the folder."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    k = scannet.read_matrix(layout.depth_intrinsic_path(scene))
    frames = []
    for frame_id in scene_frame_ids(layout, scene):
        name = f"frame_{frame_id:05d}"
        shutil.copyfile(layout.color_path(scene, frame_id), out / "images" / f"{name}.jpg")
        shutil.copyfile(layout.depth_path(scene, frame_id), out / "depth" / f"{name}.png")
        pose = world @ scannet.read_pose(layout.pose_path(scene, frame_id)) @ OPENGL_TO_OPENCV
        frames.append({"file_path": f"images/{name}.jpg", "depth_file_path": f"depth/{name}.png",
                       "transform_matrix": pose.tolist()})
    height, width = scannet.read_depth_mm(layout.depth_path(scene, scene_frame_ids(layout, scene)[0])).shape
    meta: dict = {"camera_model": "OPENCV", "fl_x": k[0, 0], "fl_y": k[1, 1], "cx": k[0, 2], "cy": k[1, 2],
            "w": width, "h": height, "frames": frames}
    if axis_alignment is not None:
        meta["axis_alignment"] = np.asarray(axis_alignment).tolist()
    (out / NERFSTUDIO_FILE).write_text(json.dumps(meta, indent=1))
    return out


def random_rigid(seed: int, tilt: bool = True) -> np.ndarray:
    """A random 4x4 rigid transform (any rotation when ``tilt``, else about z) with a few metres of shift."""
    rng = np.random.default_rng(seed)
    matrix = np.eye(4)
    matrix[:3, :3] = (Rotation.random(random_state=seed) if tilt
                      else Rotation.from_euler("z", rng.uniform(0, 360), degrees=True)).as_matrix()
    matrix[:3, 3] = rng.uniform(-4, 4, size=3)
    return matrix


def write_scene_sens(layout: DataLayout, scene: str, path: Path) -> Path:
    """The scene's posed images as a ScanNet .sens stream (its frames at their sensor numbers, colour bytes as
    stored, the frames in between repeating the last one) with ``<scene>.txt`` beside it, as ScanNet ships."""
    from vega3d.data import sens

    ids = scene_frame_ids(layout, scene)
    k = scannet.read_matrix(layout.depth_intrinsic_path(scene)).astype(np.float32)
    depth0 = scannet.read_depth_mm(layout.depth_path(scene, ids[0]))
    header = sens.SensHeader("synthetic", k, np.eye(4, dtype=np.float32), k, np.eye(4, dtype=np.float32),
                             depth0.shape[1], depth0.shape[0], depth0.shape[1], depth0.shape[0])
    frames = []
    for index in range(ids[-1] + 1):
        source = max(i for i in ids if i <= index)
        depth = np.ascontiguousarray(scannet.read_depth_mm(layout.depth_path(scene, source)), dtype="<u2")
        frames.append(sens.SensFrame(scannet.read_pose(layout.pose_path(scene, source)).astype(np.float32),
                                     index, index, layout.color_path(scene, source).read_bytes(),
                                     zlib.compress(depth.tobytes())))
    path.parent.mkdir(parents=True, exist_ok=True)
    sens.write_sens(path, header, frames)
    shutil.copyfile(layout.scan_meta_path(scene), path.with_suffix(".txt"))
    return path
