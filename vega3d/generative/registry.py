"""Encoder ids -> builders, and the channel count C of each id at the paper setting (SPEC.md section 3).

``wan_t2v``, ``wan_vace``, ``sd21``, ``vae``, ``svd``, ``dinov3`` and ``vjepa2`` run here (online, or through
``vega3d extract``). ``vggt``, ``seva`` and ``vmem`` are offline-only: users extract them with their own code
into the feature-store layout documented in ``vega3d.generative.store``, which validates them.
"""

from __future__ import annotations

import torch

from vega3d.config import GenerativeConfig
from vega3d.generative.base import GenerativeEncoder

# C of SPEC.md section 3 at the paper setting (the tiny presets have smaller widths).
PAPER_CHANNELS: dict[str, int] = {
    "wan_t2v": 1536,
    "wan_vace": 1536,
    "sd21": 1280,
    "vae": 4,
    "svd": 1280,
    "dinov3": 1024,
    "vjepa2": 1408,
    "vggt": 2048,
    "seva": 1280,
    "vmem": 1280,
}
ONLINE_IDS: tuple[str, ...] = ("wan_t2v", "wan_vace", "sd21", "vae", "svd", "dinov3", "vjepa2")
OFFLINE_ONLY_IDS: tuple[str, ...] = ("vggt", "seva", "vmem")


def build_encoder(cfg: GenerativeConfig, grid: int, device: torch.device | str = "cpu") -> GenerativeEncoder:
    """The frozen encoder of ``cfg.backbone`` with weights from ``cfg.checkpoint`` (a resolved local folder).

    On the meta device nothing is read: the model is built from its config (the checkpoint's own, or the
    shipped config of the paper model) so shapes can be checked without weights.
    """
    backbone = cfg.backbone
    if backbone in OFFLINE_ONLY_IDS:
        raise ValueError(
            f"generative.backbone={backbone!r} is offline-only: extract its features with its own code into the "
            "feature store (see vega3d.generative.store) and set generative.mode=offline"
        )
    if backbone in ("wan_t2v", "wan_vace"):
        from vega3d.generative.wan import build_wan

        return build_wan(cfg, grid, device, "vace" if backbone == "wan_vace" else "t2v")
    if backbone in ("sd21", "vae", "svd"):
        from vega3d.generative.stable_diffusion import build_stable_diffusion

        return build_stable_diffusion(cfg, grid, device)
    if backbone in ("dinov3", "vjepa2"):
        from vega3d.generative.vision import build_vision

        return build_vision(cfg, grid, device)
    raise ValueError(f"generative.backbone={backbone!r} has no encoder; choose one of {ONLINE_IDS}")
