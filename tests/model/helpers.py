"""Tiny models and random inputs for the model tests."""

from __future__ import annotations

import torch

from vega3d.config import ModelConfig, load_config
from vega3d.model.configuration import build_hf_config
from vega3d.model.modeling_vega3d import Vega3DModel

IMAGE, GROUND, COORD, IM_END = 1000, 1001, 1002, 1003
TOKEN_IDS = {"image": IMAGE, "ground": GROUND, "coord": COORD, "im_end": IM_END}
GEN_CHANNELS = 8


def tiny_model_config(**overrides) -> ModelConfig:
    """The tiny preset's model section with field overrides."""
    cfg = load_config("tiny").model
    return cfg.model_copy(update=overrides)


def tiny_model(fusion: str = "token_gated", generative_channels: int = GEN_CHANNELS, seed: int = 0,
               **overrides) -> Vega3DModel:
    """A random tiny model whose special tokens are ids 1000..1003 of the 1024-row vocabulary."""
    torch.manual_seed(seed)
    cfg = tiny_model_config(fusion=fusion, **overrides)
    return Vega3DModel(build_hf_config(cfg, generative_channels, TOKEN_IDS)).eval()


def sharpen(model: Vega3DModel, std: float = 0.3, seed: int = 1) -> None:
    """Re-draw the LLM matrices with a large std so greedy decoding is input dependent (not one token)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.language_model.parameters():
            if param.ndim == 2:
                param.copy_(torch.randn(param.shape, generator=gen) * std)


def frames(model: Vega3DModel, num_frames: int, seed: int, with_generative: bool = True) -> dict:
    """Random inputs of one sample: pixels, a world map (some invalid pixels), generative features."""
    gen = torch.Generator().manual_seed(seed)
    size = model.config.vision_config.image_size
    g = model.config.pooled_grid
    sample = {
        "pixel_values": torch.randn(num_frames, 3, size, size, generator=gen),
        "world_coords": torch.rand(num_frames, size, size, 3, generator=gen) * 4.0,
        "coord_valid": torch.rand(num_frames, size, size, generator=gen) > 0.1,
    }
    if with_generative:
        sample["generative_features"] = torch.randn(num_frames, model.config.generative_channels, g, g, generator=gen)
    return sample


def collate(samples: list[dict]) -> dict:
    """Per-sample dicts -> the model's list arguments."""
    keys = samples[0].keys()
    return {key: [s[key] for s in samples] for key in keys}
