"""Training samples from the processed llava-style records (SPEC.md sections 1, 2 and 4).

One sample = one record: its scene's frames (``data.sampling`` with ``data.frames_upbound``), back-projected
to aligned world coordinates and resized with ``vega3d.model.preprocess``; the ChatML prompt with the assistant
answer as labels (``vega3d.model.prompts.encode_record`` in train mode, spatial instruction per config);
grounding samples get all ground-truth boxes of the scene as proposals and their target(s) as positives
(no target -> no positive, the zero-target is then the positive); Scan2Cap samples get their ground-truth box
for ``<coord>``. Generative features come from a feature source (``vega3d.generative.source``: online encoder
with a bounded cache, or the offline store by feature id) or are absent for the baseline.

Many records share a scene and (with uniform sampling) the same frames, so the preprocessed frames of the
last ``scene_cache`` (scene, frames) pairs are kept in an LRU cache per process / DataLoader worker; generative
features are asked from the feature source every time (online: its bounded cache, ``generative.cache_size``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from vega3d import storage
from vega3d.config import GROUNDING_TASKS, Vega3DConfig
from vega3d.data.frames import load_scene_frames
from vega3d.data.layout import DataLayout
from vega3d.data.sampling import load_selections, sample_frame_ids, selection_budget
from vega3d.model.preprocess import preprocess_scene
from vega3d.model.prompts import encode_record, use_spatial_instruction

logger = logging.getLogger(__name__)


class FeatureSource(Protocol):
    """``vega3d.generative.source.OnlineFeatures`` / ``OfflineFeatures``."""

    channels: int

    def get(self, scene: str, frame_ids: Sequence[int], frames: torch.Tensor | None = None) -> torch.Tensor: ...


def load_records(layout: DataLayout, tasks: Sequence[str], split: str = "train") -> list[dict[str, Any]]:
    """The processed records of ``tasks`` in ``split``, in task order; a missing file names the fix."""
    records: list[dict[str, Any]] = []
    for task in tasks:
        path = layout.processed_path(task, split)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing processed records of {task}/{split}; run `vega3d data prep`")
        records.extend(storage.read_json(str(path)))
    return records


def positives_of(record: dict[str, Any], num_boxes: int) -> torch.Tensor:
    """[K] bool: the record's target object(s) among the scene's ground-truth boxes (index = object id)."""
    targets = [record["target_id"]] if record["task"] == "scanrefer" else list(record.get("target_ids", []))
    positives = torch.zeros(num_boxes, dtype=torch.bool)
    for target in targets:
        if not 0 <= int(target) < num_boxes:
            raise ValueError(
                f"record {record['id']!r}: target {target} outside the {num_boxes} ground-truth boxes of "
                f"{record['video']}; re-run `vega3d data prep`"
            )
        positives[int(target)] = True
    return positives


class Vega3DDataset(torch.utils.data.Dataset):
    """Processed records -> model-ready samples (see the module docstring); ``tasks`` lists each sample's task."""

    def __init__(
        self,
        cfg: Vega3DConfig,
        tokenizer: Any,
        records: list[dict[str, Any]],
        features: FeatureSource | None = None,
        scene_cache: int = 16,
    ) -> None:
        self.cfg = cfg
        self.layout = DataLayout(cfg.data.root)
        self.tokenizer = tokenizer
        self.records = records
        self.features = features
        self.spatial = use_spatial_instruction(cfg.model, training=True)
        self.selections = None if cfg.data.sampling == "uniform" else load_selections(
            self.layout, cfg.data.voxel_size, selection_budget(cfg.data.frames_upbound),
            cfg.data.mask_invalid_depth)
        splits = sorted({r["split"] for r in records if r["task"] in GROUNDING_TASKS})
        self.gt_boxes: dict[str, list] = {}
        for split in splits:
            self.gt_boxes.update(storage.read_json(str(self.layout.gt_box_path(split))))
        self.scene_cache = scene_cache
        self._cache: OrderedDict[tuple[str, tuple[int, ...]], dict[str, torch.Tensor]] = OrderedDict()

    @property
    def tasks(self) -> list[str]:
        return [r["task"] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def frame_ids(self, scene: str) -> list[int]:
        """The sampled frame numbers of a scene (``data.sampling``, ``data.frames_upbound``)."""
        data = self.cfg.data
        return sample_frame_ids(self.layout, scene, data.sampling, data.frames_upbound, self.selections,
                                data.coverage_ratio)

    def frame_inputs(self, scene: str, frame_ids: list[int]) -> dict[str, torch.Tensor]:
        """pixel_values [V,3,S,S], world_coords [V,S,S,3], coord_valid [V,S,S] and rgb [V,3,H,W] in [0, 1] (cached)."""
        key = (scene, tuple(frame_ids))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        frames = load_scene_frames(self.layout, scene, frame_ids)
        inputs = preprocess_scene(frames, self.cfg.model, self.cfg.data.mask_invalid_depth)
        inputs["rgb"] = torch.from_numpy(frames.rgb).permute(0, 3, 1, 2).float().div_(255.0)  # [V, 3, H, W]
        if self.scene_cache:
            self._cache[key] = inputs
            while len(self._cache) > self.scene_cache:
                self._cache.popitem(last=False)
        return inputs

    def visual_inputs(self, scene: str) -> dict[str, torch.Tensor]:
        """The frame inputs plus generative_features [V,C,g,g] from the feature source (whose own cache, if
        any, decides whether online features are recomputed: ``generative.cache_size``)."""
        frame_ids = self.frame_ids(scene)
        inputs = dict(self.frame_inputs(scene, frame_ids))
        rgb = inputs.pop("rgb")
        if self.features is not None:
            features = self.features.get(scene, frame_ids, rgb)  # [V, C, g, g]
            # a normal tensor (encoders run under inference_mode, whose tensors autograd refuses)
            inputs["generative_features"] = features.detach().to("cpu", torch.float32).clone()
        return inputs

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        encoded = encode_record(self.tokenizer, record, "train", self.spatial, self.cfg.model.loss_tokens)
        sample: dict[str, Any] = {
            "id": record["id"],
            "task": record["task"],
            "input_ids": torch.tensor(encoded.input_ids, dtype=torch.long),  # [L]
            "labels": torch.tensor(encoded.labels, dtype=torch.long),  # [L]
            **self.visual_inputs(record["scene_id"]),
        }
        if record["task"] in GROUNDING_TASKS:
            boxes = self.gt_boxes.get(record["video"])
            if not boxes:
                raise ValueError(f"record {record['id']!r}: no ground-truth boxes for {record['video']} in "
                                 f"{self.layout.gt_box_path(record['split'])}; re-run `vega3d data prep`")
            sample["proposals"] = torch.tensor(boxes, dtype=torch.float32)  # [K, 6]
            sample["ground_positives"] = positives_of(record, len(boxes))  # [K]
        elif record["task"] == "scan2cap":
            sample["coord_box"] = torch.tensor(record["box"], dtype=torch.float32)  # [6]
        return sample
