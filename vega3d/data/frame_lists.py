"""Each scene's frame list and the policy for invalid frames (issue 16; SPEC.md sections 1, 5 and 7.8).

The frame list of a scene comes from its EmbodiedScan info entry when the root has one (the released code's
source: those lists already omit ScanNet's frames with -inf poses), otherwise from ``posed_images`` (every
``NNNNN.jpg``). A frame the info lists but ``posed_images`` lacks is an error (the two disagree). Frames on
disk the info omits are left out and counted.

Policy: a frame is *invalid* when its pose has a NaN/inf entry or is not a 4x4 matrix of numbers, or one of
its images cannot be opened (header check) or, with ``deep``, fully decoded (truncated JPEG, corrupt PNG
body). Invalid frames are excluded from the list with their reason; a scene with more than
``max_invalid_ratio`` of its listed frames invalid is refused. ``vega3d data prep`` writes every scene's list
and exclusions to ``metadata/scannet_frame_lists.json``; sampling reads frame lists from there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vega3d.data.errors import DataFileError
from vega3d.data.layout import DataLayout, video_id

DEFAULT_MAX_INVALID_RATIO = 0.25
FRAME_LISTS_FILE = "scannet_frame_lists.json"


@dataclass
class FrameList:
    """A scene's usable frames (sorted), the excluded ones with their reason, and where the list came from."""

    scene: str
    frames: list[int]
    excluded: dict[int, str] = field(default_factory=dict)
    source: str = "posed_images"  # or "embodiedscan"
    not_in_info: int = 0  # frames on disk that the EmbodiedScan list omits

    @property
    def invalid_ratio(self) -> float:
        """Excluded share of the listed frames."""
        listed = len(self.frames) + len(self.excluded)
        return len(self.excluded) / listed if listed else 1.0

    def as_json(self) -> dict:
        """The ``scannet_frame_lists.json`` entry."""
        return {"frames": self.frames, "excluded": {str(k): v for k, v in sorted(self.excluded.items())},
                "source": self.source, "not_in_info": self.not_in_info}


def frame_lists_path(layout: DataLayout) -> Path:
    """``metadata/scannet_frame_lists.json``: video_id -> {frames, excluded, source, not_in_info}."""
    return layout.root / "metadata" / FRAME_LISTS_FILE


def info_frame_ids(entry: dict, source: Path) -> list[int]:
    """Frame numbers of an EmbodiedScan info entry (``images[].img_path`` stems)."""
    images = entry.get("images")
    if not isinstance(images, list) or not all(isinstance(i, dict) and "img_path" in i for i in images):
        raise DataFileError(source, f"{entry.get('sample_idx')}: images must be a list of dicts with img_path",
                            "re-download the EmbodiedScan infos")
    return sorted(int(Path(str(image["img_path"])).stem) for image in images)


def _pose_problem(path: Path) -> str | None:
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        return f"unreadable pose ({error})"
    if values.size != 16:
        return f"pose has {values.size} numbers, not 16"
    if not np.isfinite(values).all():
        return "pose has -inf/NaN entries"
    return None


def _image_problem(path: Path, deep: bool) -> str | None:
    try:
        with Image.open(path) as image:
            if deep:
                image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        return f"{'undecodable' if deep else 'unreadable'} {path.suffix[1:]} ({error})"
    return None


def frame_problem(layout: DataLayout, scene: str, frame: int, deep: bool = False) -> str | None:
    """Why a frame is invalid (its pose, colour or depth), or None when it is usable."""
    folder = layout.posed_images_dir(scene)
    stem = f"{frame:05d}"
    return (_pose_problem(folder / f"{stem}.txt") or _image_problem(folder / f"{stem}.jpg", deep)
            or _image_problem(folder / f"{stem}.png", deep))


def disk_frame_ids(layout: DataLayout, scene: str) -> list[int]:
    """Frame numbers with any file (colour, depth or pose) in ``posed_images/<scene>``, sorted."""
    return sorted({int(p.stem) for p in layout.posed_images_dir(scene).glob("*")
                   if p.stem.isdigit() and p.suffix in (".jpg", ".png", ".txt")})


def scene_frame_list(layout: DataLayout, scene: str, info_entry: dict | None = None, info_path: Path | None = None,
                     deep: bool = False, problem: Callable[[int], str | None] | None = None) -> FrameList:
    """The scene's frame list with invalid frames excluded (see the module docstring).

    ``problem`` (frame -> reason or None) replaces the per-frame check, e.g. with results computed in
    parallel. Raises DataFileError when the EmbodiedScan list names frames that ``posed_images`` lacks.
    """
    on_disk = disk_frame_ids(layout, scene)
    listed, source, not_in_info = on_disk, "posed_images", 0
    if info_entry is not None:
        listed, source = info_frame_ids(info_entry, info_path or layout.root / "embodiedscan"), "embodiedscan"
        absent = sorted(set(listed) - set(on_disk))
        if absent:
            raise DataFileError(layout.posed_images_dir(scene), f"the EmbodiedScan info lists {len(absent)} frame(s) "
                                f"that posed_images lacks (first: {absent[:5]})",
                                "re-export posed_images from the .sens file, or use matching EmbodiedScan infos")
        not_in_info = len(set(on_disk) - set(listed))
    check = problem or (lambda frame: frame_problem(layout, scene, frame, deep))
    frames, excluded = [], {}
    for frame in listed:
        reason = check(frame)
        if reason is None:
            frames.append(frame)
        else:
            excluded[frame] = reason
    return FrameList(scene, frames, excluded, source, not_in_info)


def refusal(frame_list: FrameList, max_invalid_ratio: float) -> str | None:
    """Why a scene is refused under the threshold (None when it is accepted)."""
    if frame_list.frames and frame_list.invalid_ratio <= max_invalid_ratio:
        return None
    return (f"{len(frame_list.excluded)} of {len(frame_list.frames) + len(frame_list.excluded)} frames are invalid "
            f"({100 * frame_list.invalid_ratio:.0f}% > {100 * max_invalid_ratio:.0f}%), e.g. "
            + "; ".join(f"{k:05d}: {v}" for k, v in list(frame_list.excluded.items())[:3]))


@lru_cache(maxsize=8)
def _read_frame_lists(path: str, mtime_ns: int) -> dict[str, list[int]]:
    entries = json.loads(Path(path).read_text())
    return {video: [int(f) for f in entry["frames"]] for video, entry in entries.items()}


def prepared_frame_ids(layout: DataLayout, scene: str) -> list[int] | None:
    """The scene's frames from ``metadata/scannet_frame_lists.json``; None when prep wrote no list for it."""
    path = frame_lists_path(layout)
    if not path.is_file():
        return None
    return _read_frame_lists(str(path), path.stat().st_mtime_ns).get(video_id(scene))
