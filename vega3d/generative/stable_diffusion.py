"""Stable Diffusion feature sources: ``sd21`` (UNet), ``vae`` (SD VAE latents) and ``svd`` (video UNet).

* ``sd21``: SD2.1-base. VAE latent mean x scaling_factor (0.18215) = z; DDPM/DDIM forward noising at
  t = ``cfg.timestep`` (250): x_t = sqrt(abar_t) z + sqrt(1 - abar_t) eps with abar from the checkpoint's
  scheduler config and eps seeded per (scene, frame, seed); the UNet with the cached empty-prompt CLIP
  embedding (77 tokens); feature = the input of ``unet.mid_block`` (1280 channels, 14x14 at 896x896),
  captured by a pre-hook that also ends the pass (no mid/up blocks run).
* ``vae``: the same VAE at 224x224, latent mean x 0.18215 [4, 28, 28], average-pooled by 2 -> [4, 14, 14].
* ``svd``: stable-video-diffusion-img2vid. Frames go in chunks of 8, each conditioned on its first frame like
  the SVD pipeline: CLIP image embedding of that frame, its VAE latent mode (after noise augmentation 0.02)
  concatenated to every frame's latent, added time ids (fps 6 = 7 - 1, motion bucket 127, noise aug 0.02).
  SVD is an EDM model: the noise level of DDPM step t is sigma = sqrt((1 - abar_t) / abar_t) (abar of its
  scaled-linear training schedule); x = z + sigma eps, the UNet gets c_in x with c_in = 1 / sqrt(sigma^2 + 1)
  and the continuous timestep c_noise = 0.25 ln(sigma), as diffusers' EulerDiscreteScheduler feeds it.
  Feature = the input of ``unet.mid_block`` (1280 channels).
  ``svd_mode = released`` (SPEC.md Parity 10): the release's "nearest t = 250" lookup on the continuous
  schedule lands on the scheduler's ``sigma_max`` (700); latents are the VAE means without the scaling
  factor; each frame is conditioned on its own (noise-augmented) latent, the CLIP embedding staying the
  chunk's first frame's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from vega3d.config import GenerativeConfig
from vega3d.generative import weights as ckpt
from vega3d.generative.base import CLIP, SIGNED_UNIT, GenerativeEncoder, capture_input, seeded_noise
from vega3d.generative.text_embedding import empty_prompt_embedding

CLIP_TEXT_LENGTH = 77
SHIPPED = {"sd21": "stable-diffusion-2-1-base", "vae": "stable-diffusion-2-1-base", "svd": "stable-video-diffusion-img2vid"}
VAE_RESOLUTION = (224, 224)
SVD_CHUNK = 8
SVD_FPS, SVD_MOTION_BUCKET, SVD_NOISE_AUG = 7, 127, 0.02


def alpha_bar(config_dir: Path, timestep: int) -> float:
    """Cumulative alpha of the checkpoint's training schedule at a DDPM timestep."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(DDIMScheduler.load_config(str(config_dir), subfolder="scheduler"))
    if not 0 <= timestep < len(scheduler.alphas_cumprod):
        raise ValueError(f"generative.timestep={timestep} outside the {len(scheduler.alphas_cumprod)}-step schedule")
    return float(scheduler.alphas_cumprod[timestep])


class _SDBase(GenerativeEncoder):
    """Shared VAE encoding (latent mean x scaling factor) and weights id."""

    normalization = SIGNED_UNIT

    def __init__(self, vae: torch.nn.Module, cfg: GenerativeConfig, grid: int, device: torch.device | str,
                 weights_id: str, resolution: tuple[int, int]) -> None:
        super().__init__(grid, resolution, cfg.crop, device, cfg.siglip_size)
        self.vae, self.seed, self._weights_id = vae, cfg.seed, weights_id
        self.dtype = next(vae.parameters()).dtype

    def fingerprint(self) -> str:
        return self._weights_id

    def latents(self, pixels: torch.Tensor, scaled: bool = True) -> torch.Tensor:
        """pixels [V, 3, H, W] in [-1, 1] -> latent means [V, 4, H/8, W/8] float32 (x scaling factor if ``scaled``)."""
        means = torch.cat([self.vae.encode(c.to(self.dtype)).latent_dist.mean.float() for c in pixels.split(SVD_CHUNK)])
        return means * self.vae.config.scaling_factor if scaled else means


class SDVAEEncoder(_SDBase):
    """``vae``: SD latent means, average-pooled by 2 (C = 4)."""

    encoder_id = "vae"

    def __init__(self, vae: torch.nn.Module, cfg: GenerativeConfig, grid: int, device: torch.device | str,
                 weights_id: str) -> None:
        super().__init__(vae, cfg, grid, device, weights_id, VAE_RESOLUTION)
        self.channels = vae.config.latent_channels

    def features(self, pixels: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
        return F.avg_pool2d(self.latents(pixels), 2)  # [V, 4, 14, 14] at 224x224


class SD21Encoder(_SDBase):
    """``sd21``: UNet mid-block input at DDIM t (C = 1280)."""

    encoder_id = "sd21"

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module, text_embedding: torch.Tensor, abar: float,
                 cfg: GenerativeConfig, grid: int, device: torch.device | str, weights_id: str) -> None:
        super().__init__(vae, cfg, grid, device, weights_id, cfg.resolution)
        self.unet, self.timestep, self.abar = unet, cfg.timestep, abar
        self.channels = unet.config.block_out_channels[-1]
        self.text = text_embedding.to(self.device, self.dtype).unsqueeze(0)  # [1, 77, D]

    def features(self, pixels: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
        z = self.latents(pixels)  # [V, 4, h, w]
        noise = seeded_noise(z.shape[1:], scene, frame_ids, self.seed, z.device)
        noisy = math.sqrt(self.abar) * z + math.sqrt(1.0 - self.abar) * noise
        count = noisy.shape[0]
        timesteps = torch.full((count,), self.timestep, device=self.device, dtype=torch.long)
        return capture_input(
            self.unet.mid_block,
            lambda: self.unet(noisy.to(self.dtype), timesteps, encoder_hidden_states=self.text.expand(count, -1, -1)),
            stop=True,
        )  # [V, 1280, h/8, w/8]


class SVDEncoder(_SDBase):
    """``svd``: video UNet mid-block input, chunks of 8 frames conditioned on their first frame (C = 1280)."""

    encoder_id = "svd"

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module, image_encoder: torch.nn.Module, sigma: float,
                 cfg: GenerativeConfig, grid: int, device: torch.device | str, weights_id: str) -> None:
        super().__init__(vae, cfg, grid, device, weights_id, cfg.resolution)
        self.unet, self.image_encoder, self.sigma = unet, image_encoder, sigma
        self.released = cfg.svd_mode == "released"
        self.channels = unet.config.block_out_channels[-1]

    def image_embedding(self, pixel: torch.Tensor) -> torch.Tensor:
        """One frame [1, 3, H, W] in [-1, 1] -> CLIP image embedding [1, 1, D]."""
        size = self.image_encoder.config.image_size
        image = F.interpolate((pixel + 1) / 2, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        image = CLIP.apply(image.clamp(0, 1)).to(self.dtype)
        return self.image_encoder(image).image_embeds.unsqueeze(1)

    def chunk_features(self, pixels: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
        """One chunk [F, 3, H, W] -> [F, 1280, h', w']."""
        count = pixels.shape[0]
        first = pixels[:1]
        conditioning = pixels if self.released else first  # released: every frame its own conditioning image
        aug = seeded_noise(first.shape[1:], f"{scene}#svd-cond", frame_ids[: conditioning.shape[0]], self.seed,
                           self.device)
        cond = self.vae.encode((conditioning + SVD_NOISE_AUG * aug).to(self.dtype)).latent_dist.mode().float()
        z = self.latents(pixels, scaled=not self.released)  # [F, 4, h, w]
        noise = seeded_noise(z.shape[1:], scene, frame_ids, self.seed, z.device)
        scaled = (z + self.sigma * noise) / math.sqrt(self.sigma**2 + 1.0)
        sample = torch.cat([scaled, cond.expand(count, -1, -1, -1)], dim=1).unsqueeze(0)  # [1, F, 8, h, w]
        time_ids = torch.tensor([[SVD_FPS - 1, SVD_MOTION_BUCKET, SVD_NOISE_AUG]], device=self.device)
        c_noise = torch.tensor([0.25 * math.log(self.sigma)], device=self.device)
        embedding = self.image_embedding(first)
        return capture_input(
            self.unet.mid_block,
            lambda: self.unet(sample.to(self.dtype), c_noise, encoder_hidden_states=embedding,
                              added_time_ids=time_ids.to(self.dtype)),
            stop=True,
        )  # [F, 1280, h', w']

    def features(self, pixels: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
        chunks = [
            self.chunk_features(pixels[i : i + SVD_CHUNK], scene, frame_ids[i : i + SVD_CHUNK])
            for i in range(0, pixels.shape[0], SVD_CHUNK)
        ]
        return torch.cat(chunks)


def _config_dir(cfg: GenerativeConfig, device: torch.device) -> Path:
    """The diffusers folder holding the configs: the checkpoint, or on meta the shipped paper configs."""
    folder = Path(cfg.checkpoint)
    if device.type == "meta" and not folder.is_dir():
        return ckpt.assets_dir(SHIPPED[cfg.backbone])
    if not folder.is_dir():
        raise ckpt.CheckpointError(f"{folder}: missing; expected a diffusers {SHIPPED[cfg.backbone]} folder")
    return folder


def build_stable_diffusion(cfg: GenerativeConfig, grid: int, device: torch.device | str) -> GenerativeEncoder:
    """Load (or on meta, construct) the ``sd21``, ``vae`` or ``svd`` encoder from a diffusers folder."""
    from diffusers import AutoencoderKL, AutoencoderKLTemporalDecoder, UNet2DConditionModel
    from diffusers import UNetSpatioTemporalConditionModel as SVDUNet
    from transformers import CLIPTextModel, CLIPVisionModelWithProjection

    device = torch.device(device)
    folder = _config_dir(cfg, device)
    weights_id = "meta" if device.type == "meta" else ckpt.weights_fingerprint([folder])
    load = ckpt.load_diffusers_component
    if cfg.backbone == "svd":
        unet = load(SVDUNet, folder, "unet", device)
        vae = load(AutoencoderKLTemporalDecoder, folder, "vae", device)
        image_encoder = ckpt.load_transformers_model(CLIPVisionModelWithProjection, folder / "image_encoder", device)
        if cfg.svd_mode == "released":
            sigma = float(ckpt.read_json_file(folder / "scheduler" / "scheduler_config.json",
                                              "the SVD scheduler config (sigma_max)")["sigma_max"])
        else:
            abar = alpha_bar(folder, cfg.timestep)
            sigma = math.sqrt((1.0 - abar) / abar)
        return SVDEncoder(unet, vae, image_encoder, sigma, cfg, grid, device, weights_id)
    vae = load(AutoencoderKL, folder, "vae", device)
    if cfg.backbone == "vae":
        return SDVAEEncoder(vae, cfg, grid, device, weights_id)
    unet = load(UNet2DConditionModel, folder, "unet", device)
    if device.type == "meta":
        text = torch.zeros(CLIP_TEXT_LENGTH, unet.config.cross_attention_dim, device="meta")
    else:
        text = empty_prompt_embedding(
            "clip", ckpt.weights_fingerprint([folder / "text_encoder", folder / "tokenizer"]), CLIP_TEXT_LENGTH,
            trim=False,
            load_text_encoder=lambda: (
                ckpt.load_tokenizer(folder / "tokenizer"),
                ckpt.load_transformers_model(CLIPTextModel, folder / "text_encoder", device),
            ),
        )
    return SD21Encoder(unet, vae, text, alpha_bar(folder, cfg.timestep), cfg, grid, device, weights_id)
