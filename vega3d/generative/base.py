"""The one interface of every frozen generative feature source (SPEC.md section 3).

An encoder takes frames ``[V, 3, H, W]`` float in [0, 1] (any size), resizes them to its input resolution,
applies its explicit input normalisation, and returns features ``[V, C, g, g]`` pooled to the token grid.
Encoders are frozen: ``encode`` runs under ``torch.inference_mode``, with bf16 autocast on CUDA and fp32 on
CPU, and always returns float32.

Resize modes (``GenerativeConfig.crop``):

* ``same`` (default, the improvement of SPEC.md): the full frame is squashed to the encoder's
  ``(width, height)`` without any crop, with the same kernel (bicubic, antialiased, clamped to [0, 1]) as
  the SigLIP branch (``vega3d.model.preprocess``) that squashes the full frame to its square. For a
  non-square encoder resolution (Wan 832x480) the aspect ratio differs from SigLIP's, but both branches see the
  whole field of view, so after pooling to ``g x g`` cell (i, j) of the generative grid covers the same image
  region as cell (i, j) of the semantic grid.
* ``center_vertical`` (the original code): resize so the width matches, keeping the aspect ratio, then crop the
  middle ``height`` rows (for a 640x480 frame at 832x480: 832x624 -> rows 72..551). The top and bottom of the
  frame are lost, so the grids no longer align with SigLIP's.
* ``siglip_square`` (the released VEGA-3D input): the SigLIP frame (the full frame squashed to
  ``siglip_size`` square with SigLIP's kernel) upsampled bilinearly to ``width x width``, then its middle
  ``height`` rows (1280x720: 384 -> 1280x1280 -> rows 280..999). The top and bottom of the field of view are
  lost and the vertical scale differs from SigLIP's.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CROP_MODES = ("same", "center_vertical", "siglip_square")


@dataclass(frozen=True)
class Normalization:
    """Per-channel input normalisation ``(x - mean) / std`` applied to frames in [0, 1]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def apply(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [V, 3, H, W] in [0, 1] -> normalised [V, 3, H, W]."""
        mean = torch.tensor(self.mean, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=frames.dtype, device=frames.device).view(1, 3, 1, 1)
        return (frames - mean) / std


# VAEs of Wan, SD and SVD expect pixels in [-1, 1].
SIGNED_UNIT = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
IMAGENET = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP = Normalization((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


def frame_seed(scene: str, frame_id: int, seed: int) -> int:
    """Stable 63-bit seed of one frame's noise (blake2b of scene, frame id and seed; not Python's hash())."""
    digest = hashlib.blake2b(f"{scene}|{int(frame_id)}|{int(seed)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def seeded_noise(
    shape: Sequence[int], scene: str, frame_ids: Sequence[int], seed: int, device: torch.device | str
) -> torch.Tensor:
    """Gaussian noise [V, *shape] float32, frame v drawn from its own CPU generator seeded per (scene, frame, seed).

    Drawn on the CPU so that the same frame gets the same noise on every device and in every batch.
    """
    noises = []
    for frame_id in frame_ids:
        generator = torch.Generator(device="cpu").manual_seed(frame_seed(scene, frame_id, seed))
        noises.append(torch.randn(tuple(shape), generator=generator, dtype=torch.float32))
    return torch.stack(noises).to(device)


def squash(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The SigLIP kernel (bicubic, antialiased, clamped to [0, 1]) to [V, 3, height, width]."""
    resized = F.interpolate(frames, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
    return resized.clamp(0.0, 1.0)


def resize_frames(frames: torch.Tensor, size: tuple[int, int], crop: str = "same", siglip_size: int = 384) -> torch.Tensor:
    """frames [V, 3, H, W] in [0, 1] -> [V, 3, height, width] for ``size = (width, height)`` (module docstring)."""
    if crop not in CROP_MODES:
        raise ValueError(f"crop must be one of {CROP_MODES}, got {crop!r}")
    width, height = size
    if crop == "siglip_square":
        if height > width:
            raise ValueError(f"crop siglip_square needs width >= height, got {width}x{height}")
        square = F.interpolate(squash(frames, siglip_size, siglip_size), size=(width, width), mode="bilinear",
                               align_corners=False)  # [V, 3, width, width]
        top = (width - height) // 2
        return square[..., top : top + height, :]
    src_h, src_w = frames.shape[-2:]
    scaled_h = height if crop == "same" else max(height, round(src_h * width / src_w))
    top = (scaled_h - height) // 2
    return squash(frames, scaled_h, width)[..., top : top + height, :]


def pool_to_grid(features: torch.Tensor, grid: int) -> torch.Tensor:
    """features [V, C, h, w] -> [V, C, grid, grid] by adaptive average pooling (identity when already g x g)."""
    if features.shape[-2:] == (grid, grid):
        return features
    return F.adaptive_avg_pool2d(features, grid)


def check_frames(frames: torch.Tensor) -> None:
    """Fail clearly unless frames are [V, 3, H, W] floats in [0, 1]."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be [V, 3, H, W], got shape {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise ValueError(f"frames must be float in [0, 1], got dtype {frames.dtype}; divide uint8 frames by 255")
    if frames.device.type != "meta" and frames.numel() and (frames.min() < -1e-3 or frames.max() > 1 + 1e-3):
        raise ValueError(
            f"frames must lie in [0, 1] (got min {float(frames.min()):.3f}, max {float(frames.max()):.3f}); "
            "pass raw RGB / 255, the encoder applies its own normalisation"
        )


class _StopForward(Exception):
    """Raised by a tap hook to end a forward pass once the tapped tensor is captured."""


def capture_input(module: torch.nn.Module, run: Callable[[], object], stop: bool) -> torch.Tensor:
    """The hidden-state input of ``module`` during ``run()``; with ``stop`` the forward pass ends there.

    Early exit without re-implementing any model's forward: a forward pre-hook records the tensor (the first
    positional argument, or ``hidden_states=`` when passed by keyword) and, when ``stop`` is set, raises an
    exception that unwinds the rest of the pass (later blocks and heads never run).
    """
    captured: list[torch.Tensor] = []

    def hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        captured.append(args[0] if args else kwargs["hidden_states"])
        if stop:
            raise _StopForward

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"{type(module).__name__} was never called; nothing captured")
    return captured[0]


@contextlib.contextmanager
def inference_context(device: torch.device) -> Iterator[None]:
    """inference_mode plus bf16 autocast on CUDA (fp32 elsewhere)."""
    with torch.inference_mode():
        if device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield


class GenerativeEncoder(abc.ABC):
    """A frozen feature source: ``encode(frames, scene, frame_ids) -> [V, C, grid, grid]`` float32.

    Subclasses set ``encoder_id``, ``channels``, ``normalization`` and implement ``features``; the base class
    validates the input, resizes it, normalises it, runs the model in inference mode and pools to the grid.
    """

    encoder_id: str
    channels: int
    normalization: Normalization

    def __init__(self, grid: int, resolution: tuple[int, int], crop: str, device: torch.device | str,
                 siglip_size: int = 384) -> None:
        self.grid = int(grid)
        self.resolution = (int(resolution[0]), int(resolution[1]))
        self.crop, self.siglip_size = crop, int(siglip_size)
        self.device = torch.device(device)

    @abc.abstractmethod
    def features(self, pixels: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
        """pixels [V, 3, height, width] normalised -> raw features [V, C, h, w] (any h, w)."""

    @abc.abstractmethod
    def fingerprint(self) -> str:
        """Short hash of the weights (names, sizes and leading bytes of the checkpoint files)."""

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [V, 3, H, W] in [0, 1] -> normalised [V, 3, height, width] on the encoder device."""
        check_frames(frames)
        frames = frames.to(self.device, torch.float32)
        return self.normalization.apply(resize_frames(frames, self.resolution, self.crop, self.siglip_size))

    def encode(self, frames: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
        """frames [V, 3, H, W] float in [0, 1] -> features [V, C, grid, grid] float32 on the encoder device."""
        if len(frame_ids) != frames.shape[0]:
            raise ValueError(f"{len(frame_ids)} frame ids for {frames.shape[0]} frames of {scene}")
        with inference_context(self.device):
            raw = self.features(self.preprocess(frames), scene, list(frame_ids))  # [V, C, h, w]
            pooled = pool_to_grid(raw.float(), self.grid)  # [V, C, grid, grid]
        if pooled.shape[1] != self.channels:
            raise RuntimeError(f"{self.encoder_id}: produced {pooled.shape[1]} channels, expected {self.channels}")
        return pooled
