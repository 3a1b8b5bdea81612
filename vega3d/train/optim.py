"""Optimizer, parameter groups, trainable parts and the learning-rate schedule (SPEC.md sections 2 and 6).

- Trainable parts (``vision``, ``llm``, ``projector``, ``generative_projector``, ``fusion``, ``newline``,
  ``ground_head``) map to modules through ``vega3d.train.trainable.PARTS``; everything not listed in
  ``train.trainable`` is frozen.
- AdamW with parameter groups: the vision tower at ``train.vision_lr`` (2e-6 in the paper), the grounding
  head at ``train.head_lr`` when set (the paper trains it at ``train.lr``), everything else at ``train.lr``
  (1e-5); weight decay ``train.weight_decay`` (0).
- Schedule: linear warmup over ``ceil(warmup_ratio x total_steps)`` steps, then cosine (or linear/constant)
  decay, via ``transformers.get_scheduler``.
"""

from __future__ import annotations

import math

import torch

from vega3d.config import TrainConfig
from vega3d.train.trainable import parameter_groups, set_trainable


def build_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    """torch AdamW over the trainable parameters: vision tower at ``vision_lr``, grounding head at ``head_lr``
    (when set), the rest at ``lr``.

    Trainable parts are set first from ``train.trainable`` (the model's own part map); a torch optimizer needs
    no DeepSpeed op compile.
    """
    set_trainable(model, list(train.trainable))
    groups = parameter_groups(model, train.lr, train.vision_lr, train.weight_decay, train.head_lr)
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError(f"no trainable parameters: train.trainable={train.trainable} selects nothing")
    return torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)


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
