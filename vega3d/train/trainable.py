"""The trainable-parts policy: which modules of ``Vega3DModel`` a run trains, and their optimizer groups.

``TrainConfig.trainable`` names parts (vision, llm, projector, generative_projector, fusion, newline,
ground_head); every parameter of the model belongs to exactly one part (``PARTS``: part -> module prefixes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from vega3d.model.modeling_vega3d import Vega3DModel


# Module names per trainable part (TrainConfig.trainable).
PARTS: dict[str, tuple[str, ...]] = {
    "vision": ("vision_tower",),
    "llm": ("language_model",),
    "projector": ("mm_projector",),
    "generative_projector": ("generative_projector",),
    "fusion": ("fusion",),
    "newline": ("image_newline",),
    "ground_head": ("ground_head",),
}


def _part_of(name: str) -> str:
    for part, prefixes in PARTS.items():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return part
    raise KeyError(f"parameter {name!r} belongs to no trainable part of {sorted(PARTS)}")


def set_trainable(model: Vega3DModel, parts: list[str]) -> dict[str, int]:
    """requires_grad = True exactly for the parameters of ``parts``; returns trainable counts per part."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown trainable parts {sorted(unknown)}: choose from {sorted(PARTS)}")
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        part = _part_of(name)
        param.requires_grad_(part in parts)
        if part in parts:
            counts[part] = counts.get(part, 0) + param.numel()
    return counts


def parameter_groups(
    model: Vega3DModel, lr: float, vision_lr: float, weight_decay: float = 0.0, head_lr: float | None = None
) -> list[dict]:
    """Optimizer groups over trainable parameters: the vision tower at ``vision_lr``, the grounding head at
    ``head_lr`` (its own group only when given), the rest at ``lr``."""
    named: dict[str, list[nn.Parameter]] = {"default": [], "vision": [], "ground_head": []}
    for name, param in model.named_parameters():
        if param.requires_grad:
            part = _part_of(name)
            group = part if part == "vision" or (part == "ground_head" and head_lr is not None) else "default"
            named[group].append(param)
    rates = {"default": lr, "vision": vision_lr, "ground_head": head_lr}
    return [
        {"params": params, "lr": rates[group], "weight_decay": weight_decay, "name": group}
        for group, params in named.items()
        if params or group == "default"
    ]
