"""Optimizer, parameter groups, trainable parts and the learning-rate schedule (SPEC.md sections 2 and 6).

- Trainable parts are named (``vision``, ``llm``, ``projector``, ``generative_projector``, ``fusion``,
  ``newline``, ``ground_head``); :func:`part_of` maps a parameter name to its part by module prefix, and
  :func:`apply_trainable` freezes every parameter whose part is not listed in ``train.trainable``.
- AdamW with two parameter groups: the vision tower at ``train.vision_lr`` (2e-6 in the paper), everything
  else at ``train.lr`` (1e-5); weight decay ``train.weight_decay`` (0).
- Schedule: linear warmup over ``ceil(warmup_ratio x total_steps)`` steps, then cosine (or linear/constant)
  decay, via ``transformers.get_scheduler``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from vega3d.config import TrainConfig

# Parameter-name prefixes of each trainable part (module attribute names of vega3d.model's Vega3DModel).
PART_PREFIXES: dict[str, tuple[str, ...]] = {
    "vision": ("vision_tower.",),
    "llm": ("llm.", "language_model.", "lm_head."),
    "projector": ("projector.", "mm_projector."),
    "generative_projector": ("generative_projector.",),
    "fusion": ("fusion.",),
    "newline": ("image_newline",),
    "ground_head": ("ground_head.", "grounding."),
}


def part_of(name: str) -> str:
    """Trainable part of a parameter name; ``llm`` for names matching no prefix."""
    for part, prefixes in PART_PREFIXES.items():
        if name.startswith(prefixes):
            return part
    return "llm"


def apply_trainable(model: torch.nn.Module, parts: Iterable[str]) -> dict[str, int]:
    """Set ``requires_grad`` by part; returns trainable parameter counts per part."""
    wanted = set(parts)
    unknown = wanted - set(PART_PREFIXES)
    if unknown:
        raise ValueError(f"train.trainable: unknown parts {sorted(unknown)}; choose from {sorted(PART_PREFIXES)}")
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        part = part_of(name)
        param.requires_grad_(part in wanted)
        if part in wanted:
            counts[part] = counts.get(part, 0) + param.numel()
    return counts


def parameter_groups(model: torch.nn.Module, train: TrainConfig) -> list[dict]:
    """AdamW groups over trainable parameters: vision tower at ``vision_lr``, the rest at ``lr``."""
    vision, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (vision if part_of(name) == "vision" else rest).append(param)
    groups = [
        {"params": rest, "lr": train.lr, "weight_decay": train.weight_decay, "name": "default"},
        {"params": vision, "lr": train.vision_lr, "weight_decay": train.weight_decay, "name": "vision"},
    ]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("no trainable parameters: train.trainable selects nothing that the model has")
    return groups


def build_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    """torch AdamW over :func:`parameter_groups` (no DeepSpeed op compile needed)."""
    return torch.optim.AdamW(parameter_groups(model, train), lr=train.lr, weight_decay=train.weight_decay)


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """``ceil(ratio x total)`` as in transformers' TrainingArguments."""
    return math.ceil(total_steps * warmup_ratio)


def build_scheduler(
    optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup then ``train.lr_scheduler`` decay over ``total_steps`` optimiser steps."""
    from transformers import get_scheduler

    name = "constant_with_warmup" if train.lr_scheduler == "constant" else train.lr_scheduler
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=warmup_steps(total_steps, train.warmup_ratio),
        num_training_steps=total_steps,
    )
