"""Helpers of the ask tests: prompts of processed records back to user text, scene paths, box frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
