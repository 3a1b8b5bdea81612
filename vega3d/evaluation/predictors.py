"""Model-backed predictors for ``inference.run_inference``: records in, prediction dicts out.

- ScanQA, SQA3D, Scan2Cap: the batch is left-padded and decoded greedily with the KV cache
  (``Vega3DModel.generate_greedy``), up to ``eval.max_new_tokens`` new tokens.
- ScanRefer, Multi3DRefer: one forward of the prompt ending in ``<ground>`` with the scene's predicted boxes
  (``metadata/scannet_<split>_pred_box.json``, at most ``model.max_proposals``) as proposals; ScanRefer keeps the
  best real proposal, Multi3DRefer stores proposals + scores so θ is applied at scoring time.
- Scan2Cap conditions ``<coord>`` on the best predicted box with IoU >= ``eval.caption_iou`` to the object;
  an object without one gets no caption (scored as empty) and costs no model call.
Visual inputs of a scene (frames from ``data.sampling`` / ``data.frames_upbound``, world coordinates, generative
features from ``vega3d.generative.source``) are built exactly as for training (``Vega3DDataset.visual_inputs``)
and kept on the device for the last few (scene, frames) pairs, because many records share a scene.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vega3d.benchmarks import GROUNDING_TASKS, PROPOSAL_TASKS
from vega3d.model.configuration import QWEN_IM_END
from vega3d.model.grounding import caption_box, select_scanrefer
from vega3d.model.prompts import encode_record, use_spatial_instruction
from vega3d.train.dataset import FeatureSource, Vega3DDataset

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from vega3d.config import Vega3DConfig
    from vega3d.model.modeling_vega3d import Vega3DModel

logger = logging.getLogger(__name__)


@dataclass
class SceneInputs:
    """Per-sample visual inputs of one (scene, frame list)."""

    pixel_values: torch.Tensor  # [V, 3, S, S]
    world_coords: torch.Tensor  # [V, S, S, 3]
    coord_valid: torch.Tensor  # [V, S, S]
    generative: torch.Tensor | None  # [V, C, g, g]


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> (input_ids [B, L], attention_mask [B, L]), padded on the left."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, length - len(seq):] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, length - len(seq):] = 1
    return ids, mask


class ModelPredictor:
    """Callable ``list[record] -> list[prediction]`` for one task (see the module docstring)."""

    def __init__(
        self,
        model: Vega3DModel,
        tokenizer: PreTrainedTokenizerBase,
        cfg: Vega3DConfig,
        task: str,
        proposals: Mapping[str, Sequence[Sequence[float]]] | None = None,
        features: FeatureSource | None = None,
        cache_size: int = 8,
    ) -> None:
        if task in PROPOSAL_TASKS and proposals is None:
            raise ValueError(f"{task} needs the predicted boxes of the split (proposals)")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.cfg = cfg
        self.task = task
        self.visual = Vega3DDataset(cfg, tokenizer, [], features, scene_cache=0)  # builds inputs like training
        self.proposals = {
            video: np.asarray(boxes, dtype=np.float64).reshape(-1, 6)[: cfg.model.max_proposals]
            for video, boxes in (proposals or {}).items()
        }
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.spatial = use_spatial_instruction(cfg.model, training=False)
        self.eos_id = tokenizer.convert_tokens_to_ids(QWEN_IM_END)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id
        self._cache: OrderedDict[tuple[str, tuple[int, ...]], SceneInputs] = OrderedDict()
        self.cache_size = cache_size

    # ------------------------------------------------------------------ inputs
    def scene_inputs(self, scene: str) -> SceneInputs:
        """Sampled frames of a scene -> model inputs on the model's device (cached)."""
        key = (scene, tuple(self.visual.frame_ids(scene)))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        tensors = self.visual.visual_inputs(scene)
        generative = tensors.get("generative_features")
        inputs = SceneInputs(
            pixel_values=tensors["pixel_values"].to(self.device, self.dtype),
            world_coords=tensors["world_coords"].to(self.device),
            coord_valid=tensors["coord_valid"].to(self.device),
            generative=None if generative is None else generative.to(self.device, self.dtype),
        )
        self._cache[key] = inputs
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return inputs

    def _batch_inputs(self, records: Sequence[Mapping[str, Any]], mode: str) -> dict[str, Any]:
        prompts = [encode_record(self.tokenizer, dict(r), mode, self.spatial).input_ids for r in records]
        input_ids, attention_mask = left_pad(prompts, self.pad_id)
        scenes = [self.scene_inputs(r["scene_id"]) for r in records]
        generative = [s.generative for s in scenes]
        return {
            "input_ids": input_ids.to(self.device),
            "attention_mask": attention_mask.to(self.device),
            "pixel_values": [s.pixel_values for s in scenes],
            "world_coords": [s.world_coords for s in scenes],
            "coord_valid": [s.coord_valid for s in scenes],
            "generative_features": None if any(g is None for g in generative) else generative,
        }

    # ------------------------------------------------------------------ tasks
    def check_lengths(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Refuse, before predicting, records whose sequence would exceed model.max_length (PromptTooLongError)."""
        from vega3d.model.length import enforce_max_length

        mode = "ground" if self.task in ("scanrefer", "multi3drefer") else "generate"
        enforce_max_length(self.tokenizer, [dict(r) for r in records], mode, self.spatial, self.cfg.model.max_length,
                           self.model.tokens_for_frames(self.cfg.data.frames_upbound), f"{self.task} records")

    def __call__(self, records: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        if self.task in GROUNDING_TASKS:
            return self._ground(records)
        if self.task == "scan2cap":
            return self._caption(records)
        return [{"id": r["id"], "answer": text} for r, text in zip(records, self._generate(records), strict=True)]

    @torch.no_grad()
    def _generate(self, records: Sequence[Mapping[str, Any]], coord_boxes: list | None = None) -> list[str]:
        if not records:
            return []
        tokens = self.model.generate_greedy(
            **self._batch_inputs(records, "generate"), eos_token_id=self.eos_id, pad_token_id=self.pad_id,
            coord_boxes=coord_boxes, max_new_tokens=self.cfg.eval.max_new_tokens,
        )  # [B, T]
        return [self.tokenizer.decode(row, skip_special_tokens=True).strip() for row in tokens.tolist()]

    def _caption(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        boxes = []
        for r in records:
            props = torch.from_numpy(self.proposals.get(r["video"], np.zeros((0, 6))))  # [K, 6]
            box = caption_box(torch.tensor(r["box"], dtype=torch.float64), props, self.cfg.eval.caption_iou)
            boxes.append(None if box is None else [float(v) for v in box])
        matched = [i for i, box in enumerate(boxes) if box is not None]
        coord = [torch.tensor(boxes[i], dtype=torch.float32, device=self.device) for i in matched]
        texts = dict(zip(matched, self._generate([records[i] for i in matched], coord or None), strict=True))
        return [{"id": r["id"], "caption": texts.get(i), "box": boxes[i]} for i, r in enumerate(records)]

    @torch.no_grad()
    def _ground(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        props = [self.proposals.get(r["video"], np.zeros((0, 6))) for r in records]
        usable = [i for i, p in enumerate(props) if len(p)]
        scores: dict[int, list[float]] = {}
        if usable:
            inputs = self._batch_inputs([records[i] for i in usable], "ground")
            inputs["proposals"] = [torch.tensor(props[i], dtype=torch.float32, device=self.device) for i in usable]
            out = self.model(**inputs, return_logits=False)
            scores = {i: out.ground_scores[k].float().tolist() for k, i in enumerate(usable)}  # [K + 1] each
        preds = []
        for i, rec in enumerate(records):
            boxes = props[i].tolist()
            if self.task == "scanrefer":
                # no proposal in the scene: a zero-size box (IoU 0 with any target)
                box = boxes[select_scanrefer(torch.tensor(scores[i]))] if i in scores else [0.0] * 6
                preds.append({"id": rec["id"], "box": box})
            elif i in scores:
                preds.append({"id": rec["id"], "proposals": boxes, "scores": scores[i]})
            else:
                preds.append({"id": rec["id"], "boxes": []})
        return preds


def eval_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_eval_model(cfg: Vega3DConfig, generative_channels: int, device: torch.device):
    """(model, tokenizer) of ``model.checkpoint`` (relative to ``data.root``) in eval mode, bf16 on CUDA."""
    from vega3d.model.loading import load_model

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    cfg = cfg.with_paths_under_root()
    model, tokenizer = load_model(cfg.model.checkpoint, cfg.model, generative_channels, dtype)
    return model.to(device).eval(), tokenizer


def open_features(cfg: Vega3DConfig, device: torch.device) -> FeatureSource | None:
    """Generative features of ``cfg``: None for ``backbone: none``, else online encoder or offline store."""
    if cfg.generative.backbone == "none":
        return None
    from vega3d.generative.source import open_feature_source

    cfg = cfg.with_paths_under_root()
    return open_feature_source(cfg.generative, cfg.model.pooled_grid, device, cfg.data.root)


def build_predictor(cfg: Vega3DConfig, task: str, split: str) -> ModelPredictor:
    """Load the model (and generative feature source) of ``cfg`` as the predictor of ``task`` on ``split``."""
    from vega3d.evaluation.tasks import load_proposals

    device = eval_device()
    features = open_features(cfg, device)
    model, tokenizer = load_eval_model(cfg, features.channels if features is not None else 0, device)
    proposals = load_proposals(cfg.data.root, split) if task in PROPOSAL_TASKS else None
    return ModelPredictor(model, tokenizer, cfg, task, proposals, features)
