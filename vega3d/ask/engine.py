"""The model loaded once, answering the three operations on user scenes.

- question: ScanQA-style answer (``"{question} Answer the question simply."``), or SQA3D-style when a
  situation is given; greedy decoding as in evaluation;
- ground: one forward with the ``<ground>`` prompt (ScanRefer's, or Multi3DRefer's with ``multiple``) over the
  scene's proposals; returns every proposal's score, the best box (ScanRefer's rule) and the selected boxes
  (Multi3DRefer's rule with ``model.multi3drefer_threshold``, possibly none);
- caption: Scan2Cap-style caption of a box (its centre conditions ``<coord>``).

Everything model-side is ``vega3d.evaluation.predictors.ModelPredictor``, the evaluation's own predictor, over a
staging data root holding the user scenes (``vega3d.ask.scene_inputs``): the same frame sampling, world
coordinates, generative features and prompts as training and evaluation. Proposals are the user's boxes or the
built-in ones (``vega3d.ask.proposals``), at most ``model.max_proposals``. Requests of one operation share one
model call (one forward for grounding, one batched greedy decode for text). Boxes come back in the model's
aligned frame and in the input's own frame.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vega3d.ask.proposals import builtin_proposals, check_box
from vega3d.ask.scene_inputs import SceneStager, StagedScene, check_alignment
from vega3d.data.records import (
    GROUND_PROMPT,
    IMAGE_TOKEN,
    MULTI3DREFER_SUFFIX,
    SCAN2CAP_PROMPT,
    SCANQA_PROMPT,
    SQA3D_PROMPT,
)

if TYPE_CHECKING:
    from vega3d.config import Vega3DConfig

logger = logging.getLogger(__name__)

OPERATIONS = ("question", "ground", "caption")
BOX_FRAMES = ("aligned", "input")


@dataclass
class AskRequest:
    """One operation on one scene. Exactly one of ``question``, ``ground``, ``caption_box`` is set; boxes
    given (``caption_box``, ``boxes``) are [cx, cy, cz, dx, dy, dz] in ``box_frame``."""

    scene: str
    question: str | None = None
    situation: str | None = None
    ground: str | None = None
    multiple: bool = False
    caption_box: list[float] | None = None
    boxes: list[list[float]] | None = None
    box_frame: str = "aligned"
    axis_alignment: list[list[float]] | None = None

    @property
    def operation(self) -> str:
        given = [name for name, value in (("question", self.question), ("ground", self.ground),
                                          ("caption", self.caption_box)) if value is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of question, ground, caption_box (got {given or 'none'})")
        return given[0]

    def validate(self) -> None:
        """Raise ValueError naming the offending field."""
        operation = self.operation
        for name in ("question", "situation", "ground"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{name}: must be a non-empty string")
        if self.box_frame not in BOX_FRAMES:
            raise ValueError(f"box_frame: must be one of {BOX_FRAMES}, got {self.box_frame!r}")
        if operation == "caption":
            self.caption_box = check_box(self.caption_box, "caption_box")
        if self.boxes is not None:
            if not isinstance(self.boxes, list):
                raise ValueError("boxes: must be a list of [cx, cy, cz, dx, dy, dz] boxes")
            self.boxes = [check_box(b, f"boxes[{i}]") for i, b in enumerate(self.boxes)]
        if self.axis_alignment is not None:
            check_alignment(self.axis_alignment, "axis_alignment")


CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)


def box_corner_points(box: Sequence[float]) -> np.ndarray:
    """The 8 corners [8, 3] of an axis-aligned box [cx, cy, cz, dx, dy, dz] (order of ``CORNER_SIGNS``)."""
    box = np.asarray(box, dtype=np.float64)
    return box[:3] + CORNER_SIGNS * box[3:] / 2.0


def input_box(box: Sequence[float], to_input: np.ndarray) -> dict[str, Any]:
    """An aligned-frame box -> {aligned, center, size, axes, corners} with the last three in the input frame
    (``axes`` columns are the box's x, y, z directions; the box is axis-aligned only in the aligned frame)."""
    box = np.asarray(box, dtype=np.float64)
    corners = box_corner_points(box)
    rotation, translation = to_input[:3, :3], to_input[:3, 3]
    return {
        "aligned": [float(v) for v in box],
        "center": (rotation @ box[:3] + translation).tolist(),
        "size": box[3:].tolist(),
        "axes": rotation.tolist(),
        "corners": (corners @ rotation.T + translation).tolist(),
    }


def to_aligned_box(box: Sequence[float], axis_align: np.ndarray) -> list[float]:
    """An input-frame axis-aligned box -> the aligned-frame axis-aligned box around its 8 corners."""
    corners = box_corner_points(box) @ axis_align[:3, :3].T + axis_align[:3, 3]
    low, high = corners.min(axis=0), corners.max(axis=0)
    return [float(v) for v in (*((low + high) / 2.0), *(high - low))]


@dataclass
class _Job:
    index: int
    request: AskRequest
    scene: StagedScene
    record: dict[str, Any]
    proposals: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))


class AskEngine:
    """Load once (``AskEngine.load``), then ``ask([requests])`` any number of times."""

    def __init__(self, cfg: Vega3DConfig, model: Any, tokenizer: Any, features: Any = None,
                 stage_root: str | Path | None = None) -> None:
        from vega3d.evaluation.predictors import ModelPredictor

        self._tmp = None if stage_root is not None else tempfile.TemporaryDirectory(prefix="vega3d-ask-")
        root = Path(stage_root if stage_root is not None else self._tmp.name)
        self.cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": str(root)})})
        self.stager = SceneStager(root)
        self._selections: dict[str, dict] = {}
        if self.cfg.data.sampling != "uniform":  # coverage picks of user scenes are added as they are staged
            self._write_selections()
        self.generate = ModelPredictor(model, tokenizer, self.cfg, "scanqa", None, features)
        self.grounding = ModelPredictor(model, tokenizer, self.cfg, "multi3drefer", {}, features)
        self.captioning = ModelPredictor(model, tokenizer, self.cfg, "scan2cap", {}, features)
        self._builtin: dict[str, np.ndarray] = {}

    @classmethod
    def load(cls, cfg: Vega3DConfig, checkpoint: str | None = None, tracking_uri: str | None = None,
             stage_root: str | Path | None = None) -> AskEngine:
        """Resolve ``checkpoint`` (local path, s3:// URI or ``models:/<name>@<alias>``; default
        ``model.checkpoint``), load the model and the generative feature source (online: a user scene has no
        precomputed features; a remote generative checkpoint is staged down) on CUDA when present."""
        from vega3d import staging, storage
        from vega3d.ask.checkpoints import resolve_checkpoint
        from vega3d.evaluation.predictors import eval_device, load_eval_model, open_features

        cfg = cfg.with_paths_under_root()
        local = resolve_checkpoint(checkpoint or cfg.model.checkpoint, tracking_uri)
        generative = cfg.generative
        if generative.backbone != "none" and storage.is_remote(generative.checkpoint):
            generative = generative.model_copy(update={"checkpoint": str(staging.stage_down(generative.checkpoint))})
        if generative.mode == "offline":
            logger.info("generative.mode=offline has no features for a new scene: computing them online")
            generative = generative.model_copy(update={"mode": "online", "feature_id": None})
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"checkpoint": local}),
                                     "generative": generative})
        device = eval_device()
        features = open_features(cfg, device)
        model, tokenizer = load_eval_model(cfg, features.channels if features is not None else 0, device)
        return cls(cfg, model, tokenizer, features, stage_root)

    # ------------------------------------------------------------------ requests -> records
    def stage(self, request: AskRequest) -> StagedScene:
        """Stage the request's scene (once per scene path); with coverage sampling also its greedy frame picks."""
        align = None if request.axis_alignment is None else np.asarray(request.axis_alignment, dtype=np.float64)
        scene = self.stager.stage(request.scene, align)
        if self.cfg.data.sampling != "uniform" and scene.scene not in self._selections:
            self._add_selection(scene.scene)
        return scene

    def _write_selections(self) -> None:
        from vega3d.data.sampling import selection_budget
        from vega3d.storage import write_json

        data = self.cfg.data
        path = self.stager.layout.select_frames_path(data.voxel_size, selection_budget(data.frames_upbound),
                                                     data.mask_invalid_depth)
        write_json(str(path), list(self._selections.values()))

    def _add_selection(self, scene: str) -> None:
        """Max-coverage picks of a user scene (``vega3d.data.sampling``); with no mesh, the scene's voxel set is
        the union of its frames' voxels."""
        from vega3d.data.frames import scene_frame_ids
        from vega3d.data.layout import video_id
        from vega3d.data.sampling import coverage_selection, scene_frame_voxels, selection_budget

        layout, data = self.stager.layout, self.cfg.data
        frame_voxels = scene_frame_voxels(layout, scene, scene_frame_ids(layout, scene), data.voxel_size,
                                          mask_invalid=data.mask_invalid_depth)
        union = np.unique(np.concatenate(frame_voxels), axis=0)
        entry = coverage_selection(layout, scene, union, selection_budget(data.frames_upbound), data.voxel_size,
                                   mask_invalid=data.mask_invalid_depth)
        self._selections[scene] = entry
        self._write_selections()
        for predictor in (self.generate, self.grounding, self.captioning):
            predictor.visual.selections[video_id(scene)] = entry

    def scene_proposals(self, scene: StagedScene) -> np.ndarray:
        """Built-in proposals of a staged scene (aligned frame), computed once."""
        if scene.scene not in self._builtin:
            from vega3d.ask.alignment import oriented_points

            cloud = oriented_points(self.stager.layout, scene.scene, scene.axis_align, max_frames=64)
            boxes = builtin_proposals(cloud, self.cfg.model.max_proposals)
            self._builtin[scene.scene] = np.asarray(boxes, dtype=np.float64).reshape(-1, 6)
            logger.info("%s: %d built-in proposals", scene.source, len(boxes))
        return self._builtin[scene.scene]

    def _aligned(self, boxes: Sequence[Sequence[float]], request: AskRequest, scene: StagedScene) -> np.ndarray:
        if request.box_frame == "input":
            boxes = [to_aligned_box(b, scene.axis_align) for b in boxes]
        return np.asarray(boxes, dtype=np.float64).reshape(-1, 6)

    def _job(self, index: int, request: AskRequest) -> _Job:
        operation = request.operation
        scene = self.stage(request)
        record: dict[str, Any] = {"id": f"ask-{index}", "scene_id": scene.scene, "video": f"ask/{index}"}
        if operation == "question":
            prompt = (SQA3D_PROMPT.format(situation=request.situation, question=request.question)
                      if request.situation else SCANQA_PROMPT.format(question=request.question))
        elif operation == "ground":
            prompt = GROUND_PROMPT.format(description=request.ground) + (MULTI3DREFER_SUFFIX if request.multiple else "")
        else:
            prompt = SCAN2CAP_PROMPT
            record["box"] = self._aligned([request.caption_box], request, scene)[0].tolist()
        record["conversations"] = [{"from": "human", "value": f"{IMAGE_TOKEN}\n{prompt}"}, {"from": "gpt", "value": ""}]
        job = _Job(index, request, scene, record)
        if operation == "ground":
            boxes = request.boxes
            job.proposals = (self._aligned(boxes, request, scene) if boxes is not None
                             else self.scene_proposals(scene))[: self.cfg.model.max_proposals]
        elif operation == "caption":
            job.proposals = np.asarray([record["box"]], dtype=np.float64)
        return job

    # ------------------------------------------------------------------ the operations
    def ask(self, requests: Sequence[AskRequest]) -> list[dict[str, Any]]:
        """Answer every request; one model call per operation present. Raises ValueError naming the field of
        an invalid request and FileNotFoundError for a scene path that is not a scene."""
        for request in requests:
            request.validate()
        jobs = [self._job(i, r) for i, r in enumerate(requests)]
        results: dict[int, dict[str, Any]] = {}
        by_op = {op: [j for j in jobs if j.request.operation == op] for op in OPERATIONS}
        if by_op["question"]:
            preds = self.generate([j.record for j in by_op["question"]])
            results.update({j.index: {"answer": p["answer"]} for j, p in zip(by_op["question"], preds, strict=True)})
        if by_op["ground"]:
            results.update(self._ground(by_op["ground"]))
        if by_op["caption"]:
            for job in by_op["caption"]:
                self.captioning.proposals[job.record["video"]] = job.proposals
            preds = self.captioning([j.record for j in by_op["caption"]])
            for job, pred in zip(by_op["caption"], preds, strict=True):
                results[job.index] = {"caption": pred["caption"],
                                      "box": input_box(job.record["box"], job.scene.to_input)}
        return [self._describe(job, results[job.index]) for job in jobs]

    def _ground(self, jobs: Sequence[_Job]) -> dict[int, dict[str, Any]]:
        import torch

        from vega3d.model.grounding import select_multi3drefer, select_scanrefer

        for job in jobs:
            self.grounding.proposals[job.record["video"]] = job.proposals
        preds = self.grounding([j.record for j in jobs])
        model_cfg = self.cfg.model
        out = {}
        for job, pred in zip(jobs, preds, strict=True):
            if "scores" not in pred:  # no proposal in the scene
                out[job.index] = {"best": None, "boxes": [], "proposals": [], "scores": [], "no_target_score": None}
                continue
            scores = torch.tensor(pred["scores"], dtype=torch.float64)  # [K + 1]
            chosen = select_multi3drefer(scores, model_cfg.ground_temperature, model_cfg.multi3drefer_threshold)
            probs = torch.softmax(scores / model_cfg.ground_temperature, dim=0).tolist()
            to_input = job.scene.to_input
            out[job.index] = {
                "best": input_box(pred["proposals"][select_scanrefer(scores)], to_input),
                "boxes": [{**input_box(pred["proposals"][i], to_input), "probability": probs[i]} for i in chosen],
                "proposals": [{**input_box(box, to_input), "score": float(s)}
                              for box, s in zip(pred["proposals"], pred["scores"][:-1], strict=True)],
                "scores": [float(s) for s in pred["scores"]],
                "no_target_score": float(pred["scores"][-1]),
            }
        return out

    @staticmethod
    def _describe(job: _Job, result: dict[str, Any]) -> dict[str, Any]:
        scene = job.scene
        return {"operation": job.request.operation, "scene": scene.source, "input": scene.kind,
                "axis_alignment": scene.axis_align.tolist(), "alignment_estimated": scene.alignment_estimated,
                **result}
