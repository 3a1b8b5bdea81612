"""The on-disk data layout of SPEC.md section 5: every path real users download, in one place.

``DataLayout(root)`` turns a data root into the file names of the ScanNet posed images, scans, predicted
masks, EmbodiedScan info files, metadata, raw benchmark files and processed llava-style records. The
synthetic generator writes exactly these paths and the readers read exactly these paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "val", "test")

# Raw benchmark files per task and split (the names of the public releases).
SCANREFER_FILE = "benchmark/scanrefer/ScanRefer_filtered_{split}.json"
MULTI3DREFER_FILE = "benchmark/multi3drefer/multi3drefer_{split}.json"
SCANQA_FILE = "benchmark/scanqa/ScanQA_v1.0_{split}.json"
SQA3D_QUESTIONS_FILE = "benchmark/sqa_task/balanced/v1_balanced_questions_{split}_scannetv2.json"
SQA3D_ANNOTATIONS_FILE = "benchmark/sqa_task/balanced/v1_balanced_sqa_annotations_{split}_scannetv2.json"


def frame_name(frame_id: int) -> str:
    """Sensor frame number -> file stem, e.g. 20 -> '00020'."""
    return f"{frame_id:05d}"


def video_id(scene: str) -> str:
    """Scene id -> the ``video`` / ``sample_idx`` key used by EmbodiedScan and the records."""
    return f"scannet/{scene}"


def scene_of(video: str) -> str:
    """``scannet/scene0000_00`` -> ``scene0000_00``."""
    return video.split("/", 1)[1] if video.startswith("scannet/") else video


@dataclass(frozen=True)
class DataLayout:
    """Paths under one data root (a local folder)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    # --- scannet/posed_images/<scene>/ -------------------------------------------------------------
    def posed_images_dir(self, scene: str) -> Path:
        return self.root / "scannet" / "posed_images" / scene

    def color_path(self, scene: str, frame_id: int) -> Path:
        return self.posed_images_dir(scene) / f"{frame_name(frame_id)}.jpg"

    def depth_path(self, scene: str, frame_id: int) -> Path:
        """uint16 depth in millimetres, 0 = invalid."""
        return self.posed_images_dir(scene) / f"{frame_name(frame_id)}.png"

    def pose_path(self, scene: str, frame_id: int) -> Path:
        """4x4 camera-to-world matrix (OpenCV axes, raw scan frame) as text."""
        return self.posed_images_dir(scene) / f"{frame_name(frame_id)}.txt"

    def intrinsic_path(self, scene: str) -> Path:
        return self.posed_images_dir(scene) / "intrinsic.txt"

    def depth_intrinsic_path(self, scene: str) -> Path:
        return self.posed_images_dir(scene) / "depth_intrinsic.txt"

    # --- scannet/scans/<scene>/ ---------------------------------------------------------------------
    def scan_dir(self, scene: str) -> Path:
        return self.root / "scannet" / "scans" / scene

    def scan_meta_path(self, scene: str) -> Path:
        """``<scene>.txt`` holding ``axisAlignment = 16 floats``."""
        return self.scan_dir(scene) / f"{scene}.txt"

    def mesh_path(self, scene: str) -> Path:
        return self.scan_dir(scene) / f"{scene}_vh_clean_2.ply"

    def segs_path(self, scene: str) -> Path:
        return self.scan_dir(scene) / f"{scene}_vh_clean_2.0.010000.segs.json"

    def aggregation_path(self, scene: str) -> Path:
        return self.scan_dir(scene) / f"{scene}.aggregation.json"

    def mask_path(self, scene: str) -> Path:
        """Predicted instance masks: scipy sparse matrix [num_masks, num_mesh_vertices]."""
        return self.root / "scannet" / "mask" / f"{scene}.mask.npz"

    def aligned_points_path(self, scene: str) -> Path:
        """Prep output: mesh vertices in the aligned frame with colours and instance ids (``.npz``)."""
        return self.root / "scannet" / "pcd_with_global_alignment" / f"{scene}.npz"

    def label_map_path(self) -> Path:
        """Optional ScanNet label table (raw_category -> NYU40 class), used for ScanRefer unique/multiple."""
        return self.root / "scannet" / "scannetv2-labels.combined.tsv"

    # --- embodiedscan/, metadata/ -------------------------------------------------------------------
    def embodiedscan_info_path(self, split: str) -> Path:
        return self.root / "embodiedscan" / f"embodiedscan_infos_{split}.pkl"

    def gt_box_path(self, split: str) -> Path:
        return self.root / "metadata" / f"scannet_{split}_gt_box.json"

    def pred_box_path(self, split: str) -> Path:
        return self.root / "metadata" / f"scannet_{split}_pred_box.json"

    def voxel_path(self, voxel_size: float = 0.1) -> Path:
        """Scene voxel sets, named by their voxel size (the released file is ``pcd_discrete_0.1.pkl``)."""
        return self.root / "metadata" / f"pcd_discrete_{voxel_size:g}.pkl"

    def select_frames_path(self, voxel_size: float = 0.1, budget: int = 32, masked: bool = True) -> Path:
        """Max-coverage picks, keyed by the settings that made them: the released name for 0.1 m voxels and 32
        picks, ``..._voxel<size>_frames<picks>`` for any other, ``_unmasked`` added when invalid depth was not
        masked (``data.mask_invalid_depth``), so that runs with different settings on one data root never
        overwrite each other."""
        stem = "scannet_select_frames"
        if (voxel_size, budget) != (0.1, 32):
            stem += f"_voxel{voxel_size:g}_frames{budget}"
        return self.root / "metadata" / f"{stem}{'' if masked else '_unmasked'}.json"

    def split_file_path(self, split: str) -> Path:
        """Scene list of a split (ScanNet's ``scannetv2_<split>.txt``)."""
        return self.root / "metadata" / f"scannetv2_{split}.txt"

    # --- benchmark/, processed/, models/ ------------------------------------------------------------
    def benchmark_path(self, template: str, split: str) -> Path:
        return self.root / template.format(split=split)

    def processed_path(self, task: str, split: str) -> Path:
        return self.root / "processed" / f"{task}_{split}_llava_style.json"

    def models_dir(self) -> Path:
        return self.root / "models"
