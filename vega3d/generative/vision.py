"""Non-generative comparison sources of SPEC.md section 3: ``dinov3`` and ``vjepa2`` (transformers models).

* ``dinov3``: DINOv3 ViT-L/16 (``DINOv3ViTModel``) at 224x224 (the frame squashed like SigLIP's, or
  ``crop``); feature = the last (224/16)^2 = 196 tokens of the final hidden state (the patch tokens after the
  CLS and register tokens) as [1024, 14, 14].
* ``vjepa2``: V-JEPA 2 ViT-g (``VJEPA2Model`` encoder, predictor skipped). All V frames form one clip; each
  frame is resized so its short side is 256 and centre-cropped to 224 (the model's own "224 crop"
  preprocessing); an odd V repeats the last frame. Tubelets of 2 frames give [V/2, 14, 14, 1408] tokens,
  each repeated for its 2 frames -> [V, 1408, 14, 14] (16 -> 32 for the paper's 32 frames).
  ``vjepa2_input = released`` (SPEC.md Parity 10): the full frame squashed to 384x384 (24x24 patches), and
  the V/2 tubelet grids mapped to V frames by ``int(linspace(0, V/2 - 1, V))`` (16 -> 32: 0,0,0,1,1,2,...).
Both use ImageNet mean/std.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from vega3d.config import GenerativeConfig
from vega3d.generative import weights as ckpt
from vega3d.generative.base import IMAGENET, GenerativeEncoder, check_frames, squash

RESOLUTION = (224, 224)
SHIPPED = {"dinov3": "vit_large_patch16_dinov3", "vjepa2": "vjepa2-vitg-fpc64-384-ssv2"}
VJEPA2_SHORT_SIDE = 256
VJEPA2_RELEASED_SIZE = 384


class _VisionBase(GenerativeEncoder):
    normalization = IMAGENET

    def __init__(self, model: torch.nn.Module, cfg: GenerativeConfig, grid: int, device: torch.device | str,
                 weights_id: str) -> None:
        super().__init__(grid, RESOLUTION, cfg.crop, device, cfg.siglip_size)
        self.model, self._weights_id = model, weights_id
        self.channels = model.config.hidden_size
        self.patch = model.config.patch_size
        self.dtype = next(model.parameters()).dtype

    def fingerprint(self) -> str:
        return self._weights_id

    def tokens_to_grid(self, tokens: torch.Tensor, size: int = RESOLUTION[1]) -> torch.Tensor:
        """[N, h*w, D] -> [N, D, h, w] for the patch grid of a size x size input."""
        side = size // self.patch
        return tokens.unflatten(1, (side, side)).permute(0, 3, 1, 2)


class DINOv3Encoder(_VisionBase):
    """``dinov3``: last 196 patch tokens (C = 1024)."""

    encoder_id = "dinov3"

    def features(self, pixels: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
        hidden = self.model(pixel_values=pixels.to(self.dtype)).last_hidden_state  # [V, 1 + R + 196, D]
        patches = (RESOLUTION[0] // self.patch) * (RESOLUTION[1] // self.patch)
        return self.tokens_to_grid(hidden[:, -patches:])  # [V, D, 14, 14]


class VJEPA2Encoder(_VisionBase):
    """``vjepa2``: one clip of all frames, tubelet tokens repeated per frame (C = 1408)."""

    encoder_id = "vjepa2"

    def __init__(self, model: torch.nn.Module, cfg: GenerativeConfig, grid: int, device: torch.device | str,
                 weights_id: str) -> None:
        super().__init__(model, cfg, grid, device, weights_id)
        self.released = cfg.vjepa2_input == "released"

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """Short side -> 256, centre crop 224, ImageNet normalisation: [V, 3, 224, 224] (released: the frame
        squashed to [V, 3, 384, 384])."""
        check_frames(frames)
        frames = frames.to(self.device, torch.float32)
        if self.released:
            return self.normalization.apply(squash(frames, VJEPA2_RELEASED_SIZE, VJEPA2_RELEASED_SIZE))
        height, width = frames.shape[-2:]
        scale = VJEPA2_SHORT_SIDE / min(height, width)
        size = (max(RESOLUTION[1], round(height * scale)), max(RESOLUTION[0], round(width * scale)))
        resized = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)
        top, left = (size[0] - RESOLUTION[1]) // 2, (size[1] - RESOLUTION[0]) // 2
        return self.normalization.apply(resized[..., top : top + RESOLUTION[1], left : left + RESOLUTION[0]])

    def features(self, pixels: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
        count = pixels.shape[0]
        tubelet = self.model.config.tubelet_size
        padded = torch.cat([pixels, pixels[-1:].expand((-count) % tubelet, -1, -1, -1)])  # [T, 3, 224, 224]
        tokens = self.model.get_vision_features(padded.unsqueeze(0).to(self.dtype))  # [1, T/2 * 196, D]
        per_tubelet = tokens[0].unflatten(0, (padded.shape[0] // tubelet, -1))  # [T/2, h*w, D]
        grid = self.tokens_to_grid(per_tubelet, pixels.shape[-1])  # [T/2, D, h, w]
        if self.released:
            index = torch.linspace(0, grid.shape[0] - 1, count, device=grid.device).long()
            return grid[index]  # [V, D, 24, 24]
        return grid.repeat_interleave(tubelet, dim=0)[:count]  # [V, D, 14, 14]


def build_vision(cfg: GenerativeConfig, grid: int, device: torch.device | str) -> GenerativeEncoder:
    """Load (or on meta, construct) the ``dinov3`` or ``vjepa2`` encoder from a transformers folder."""
    from transformers import DINOv3ViTModel, VJEPA2Model

    device = torch.device(device)
    folder = Path(cfg.checkpoint)
    if device.type == "meta" and not folder.is_dir():
        folder = ckpt.assets_dir(SHIPPED[cfg.backbone])
    elif not folder.is_dir():
        raise ckpt.CheckpointError(f"{folder}: missing; expected a transformers {SHIPPED[cfg.backbone]} folder")
    weights_id = "meta" if device.type == "meta" else ckpt.weights_fingerprint([folder])
    if cfg.backbone == "dinov3":
        return DINOv3Encoder(ckpt.load_transformers_model(DINOv3ViTModel, folder, device), cfg, grid, device, weights_id)
    return VJEPA2Encoder(ckpt.load_transformers_model(VJEPA2Model, folder, device), cfg, grid, device, weights_id)
