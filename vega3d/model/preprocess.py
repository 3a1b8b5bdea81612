"""Frames and world-coordinate maps -> model inputs, with one resize for both (SPEC.md section 2).

RGB: resized to S x S (bicubic with antialiasing, like the SigLIP image processor), scaled to [0, 1]
and normalised with mean = std = 0.5 -> pixel_values [V, 3, S, S].
World map: the same S x S resize but nearest-neighbour, so every output pixel carries the coordinates
of one real input pixel (no blending across depth edges) and invalid pixels stay invalid
-> world_coords [V, S, S, 3] float32, coord_valid [V, S, S] bool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from vega3d.config import ModelConfig
    from vega3d.data.frames import SceneFrames


def preprocess_rgb(
    rgb: np.ndarray,
    image_size: int,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> torch.Tensor:
    """rgb [V, H, W, 3] uint8 -> pixel_values [V, 3, S, S] float32."""
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb must be [V, H, W, 3] uint8, got {rgb.shape} {rgb.dtype}")
    images = torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).float() / 255.0  # [V, 3, H, W]
    images = F.interpolate(images, size=(image_size, image_size), mode="bicubic", antialias=True,
                           align_corners=False).clamp(0.0, 1.0)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def preprocess_world(world: np.ndarray, valid: np.ndarray, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """world [V, H, W, 3] metres + valid [V, H, W] -> (world_coords [V, S, S, 3] fp32, coord_valid [V, S, S])."""
    if world.ndim != 4 or world.shape[-1] != 3 or valid.shape != world.shape[:3]:
        raise ValueError(f"world must be [V, H, W, 3] with valid [V, H, W], got {world.shape} and {valid.shape}")
    stacked = torch.cat(
        [torch.from_numpy(np.ascontiguousarray(world, dtype=np.float32)),
         torch.from_numpy(np.ascontiguousarray(valid)).float().unsqueeze(-1)],
        dim=-1,
    ).permute(0, 3, 1, 2)  # [V, 4, H, W]
    resized = F.interpolate(stacked, size=(image_size, image_size), mode="nearest-exact").permute(0, 2, 3, 1)
    coord_valid = resized[..., 3] > 0.5  # [V, S, S]
    world_coords = torch.where(coord_valid.unsqueeze(-1), resized[..., :3], torch.zeros_like(resized[..., :3]))
    return world_coords.contiguous(), coord_valid


def preprocess_frames(
    rgb: np.ndarray, world: np.ndarray, valid: np.ndarray, model_cfg: ModelConfig
) -> dict[str, torch.Tensor]:
    """One sample's frames -> {"pixel_values", "world_coords", "coord_valid"} (the model's per-sample inputs)."""
    vision = model_cfg.vision
    pixel_values = preprocess_rgb(rgb, vision.image_size, vision.image_mean, vision.image_std)
    world_coords, coord_valid = preprocess_world(world, valid, vision.image_size)
    return {"pixel_values": pixel_values, "world_coords": world_coords, "coord_valid": coord_valid}


def preprocess_scene(frames: SceneFrames, model_cfg: ModelConfig, mask_invalid_depth: bool = True) -> dict[str, torch.Tensor]:
    """SceneFrames -> model inputs: back-projects the depth to aligned world coordinates, then resizes.

    ``mask_invalid_depth`` False (released) keeps depth-0 pixels, back-projected onto the camera centre."""
    from vega3d.data.geometry import world_coordinates

    world, valid = world_coordinates(frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align,
                                     mask_invalid_depth)
    return preprocess_frames(frames.rgb, world, valid, model_cfg)
