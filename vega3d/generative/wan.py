"""Wan2.1 feature sources: ``wan_t2v`` (WanTransformer3DModel) and ``wan_vace`` (WanVACETransformer3DModel).

Per frame (each frame is a 1-frame video, which the Wan VAE accepts: it takes 1 + 4k frames):

1. pixels in [-1, 1] -> VAE latent mean z [16, 1, h, w], normalised per channel (z - latents_mean) / latents_std;
2. flow-matching noise at the timestep nearest ``cfg.timestep`` of the 1000-step schedule shifted by
   ``cfg.shift`` (sigma ~0.30 for 300 and shift 5): x_t = (1 - sigma) z + sigma eps, eps seeded per
   (scene, frame id, seed);
3. the DiT with the cached empty-prompt umT5 embedding; the hidden states leaving block ``cfg.block``
   [(h/2)(w/2), D] are reshaped to the latent grid [D, h/2, w/2] (the base class pools them to g x g).

Early exit (``cfg.early_exit``): the hidden states are captured by a forward pre-hook on the module that
consumes block ``k``'s output (block k+1, or ``norm_out`` after the last block), which then stops the forward
pass, so no later block and no head runs. For VACE the hook sees what block k+1 sees, i.e. block k's output
plus its VACE hint (as in the original Wan VACE code, where the hint is added inside the block), and only the
VACE control blocks feeding layers <= k are run. With ``early_exit=False`` the same hook only records and the
full model runs, which is what the equality test and the benchmark compare against.

``wan_vace`` conditioning (first frame as reference, ``context_scale`` 1.0): following diffusers'
WanVACEPipeline with a control video and no mask (mask = 1), each frame's context is
[inactive = VAE(0), reactive = VAE(frame)] (32 channels) plus the 64-channel pixel-unshuffled mask, with the
reference (the first frame of the frame list) prepended as one more latent frame ([VAE(ref), 0] and a zero
mask). The noisy latent holds the noised reference and the noised frame; features are read at the frame's
latent slot (the pipeline drops the reference slot the same way). ``vace_layout = released`` (SPEC.md
Parity 10): the noisy latent holds the noised frame only, zero-padded at the end to the two-slot context,
and the features are read at slot 1 (the padding's tokens, which see the frame through attention).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from vega3d.config import GenerativeConfig
from vega3d.generative import weights as ckpt
from vega3d.generative.base import SIGNED_UNIT, GenerativeEncoder, capture_input, seeded_noise
from vega3d.generative.text_embedding import empty_prompt_embedding

logger = logging.getLogger(__name__)

WAN_TEXT_LENGTH = 512  # umT5 tokens of Wan's text conditioning (text_len of the original config)
VAE_CHUNK = 8  # frames per VAE call


def flow_match_timestep(timestep: int, shift: float, num_train_timesteps: int = 1000) -> tuple[float, float]:
    """(timestep value, sigma) of the shifted flow-matching schedule entry nearest ``timestep``."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=num_train_timesteps, shift=shift)
    index = int(torch.argmin((scheduler.timesteps - timestep).abs()))
    return float(scheduler.timesteps[index]), float(scheduler.sigmas[index])


@contextlib.contextmanager
def _only_vace_blocks_up_to(transformer: torch.nn.Module, block: int) -> Iterator[None]:
    """Temporarily keep only the VACE control blocks whose hints reach layers <= block."""
    layers = getattr(transformer.config, "vace_layers", None)
    if layers is None:
        yield
        return
    full = transformer.vace_blocks
    transformer.vace_blocks = torch.nn.ModuleList(list(full)[: sum(1 for layer in layers if layer <= block)])
    try:
        yield
    finally:
        transformer.vace_blocks = full


def tap_block_output(transformer: torch.nn.Module, block: int, early_exit: bool, **inputs) -> torch.Tensor:
    """Hidden states [B, L, D] leaving DiT block ``block`` (see the module docstring for the mechanism)."""
    blocks = transformer.blocks
    if not 0 <= block < len(blocks):
        raise ValueError(f"block {block} out of range: the DiT has {len(blocks)} blocks (0..{len(blocks) - 1})")
    consumer = blocks[block + 1] if block + 1 < len(blocks) else transformer.norm_out
    with _only_vace_blocks_up_to(transformer, block) if early_exit else contextlib.nullcontext():
        return capture_input(consumer, lambda: transformer(**inputs, return_dict=False), stop=early_exit)


class WanEncoder(GenerativeEncoder):
    """Wan2.1 T2V / VACE DiT features at one block (C = DiT width, 1536 for 1.3B)."""

    normalization = SIGNED_UNIT

    def __init__(
        self,
        encoder_id: str,
        transformer: torch.nn.Module,
        vae: torch.nn.Module,
        text_embedding: torch.Tensor,
        cfg: GenerativeConfig,
        grid: int,
        device: torch.device | str,
        weights_id: str,
    ) -> None:
        super().__init__(grid, cfg.resolution, cfg.crop, device, cfg.siglip_size)
        self.encoder_id = encoder_id
        self.transformer, self.vae = transformer, vae
        self.block, self.early_exit, self.seed = cfg.block, cfg.early_exit, cfg.seed
        self.channels = transformer.config.num_attention_heads * transformer.config.attention_head_dim
        self.timestep, self.sigma = flow_match_timestep(cfg.timestep, cfg.shift)
        self.dtype = next(transformer.parameters()).dtype
        self.text = text_embedding.to(self.device, self.dtype).unsqueeze(0)  # [1, L, text_dim]
        z = vae.config.z_dim
        self.latents_mean = torch.tensor(vae.config.latents_mean, device=self.device).view(1, z, 1, 1, 1)
        self.latents_std = torch.tensor(vae.config.latents_std, device=self.device).view(1, z, 1, 1, 1)
        self._weights_id = weights_id
        if not 0 <= self.block < transformer.config.num_layers:
            raise ValueError(f"generative.block={self.block}: the DiT has {transformer.config.num_layers} blocks")
        stride = vae.config.scale_factor_spatial * transformer.config.patch_size[1]
        if self.resolution[0] % stride or self.resolution[1] % stride:
            raise ValueError(f"generative.resolution={list(self.resolution)}: width and height must be multiples of "
                             f"{stride} (VAE x DiT patch), e.g. [832, 480]")

    def fingerprint(self) -> str:
        return self._weights_id

    def latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [V, 3, H, W] in [-1, 1] -> normalised VAE latent means [V, 16, 1, H/8, W/8] float32."""
        video = pixels.to(self.vae.dtype).unsqueeze(2)  # [V, 3, 1, H, W]: each frame a 1-frame video
        means = [self.vae.encode(chunk).latent_dist.mean.float() for chunk in video.split(VAE_CHUNK)]
        return (torch.cat(means) - self.latents_mean) / self.latents_std

    def noised(self, latents: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
        """x_t = (1 - sigma) z + sigma eps with per-frame seeded eps; [V, 16, T, h, w]."""
        noise = seeded_noise(latents.shape[1:], scene, frame_ids, self.seed, latents.device)
        return (1.0 - self.sigma) * latents + self.sigma * noise

    def dit_inputs(self, pixels: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> dict[str, torch.Tensor]:
        """The DiT keyword inputs for a batch of frames."""
        latents = self.latents(pixels)  # [V, 16, 1, h, w]
        count = latents.shape[0]
        return {
            "hidden_states": self.noised(latents, scene, frame_ids).to(self.dtype),
            "timestep": torch.full((count,), self.timestep, device=self.device),
            "encoder_hidden_states": self.text.expand(count, -1, -1),
        }

    def feature_slot(self) -> int:
        """Latent frame index whose tokens are the frame's features."""
        return 0

    def dit_features(self, inputs: dict[str, torch.Tensor], early_exit: bool) -> torch.Tensor:
        """DiT inputs -> block output on the latent grid [V, D, h/2, w/2]."""
        hidden = tap_block_output(self.transformer, self.block, early_exit, **inputs)  # [V, T*h'*w', D]
        _, _, frames, height, width = inputs["hidden_states"].shape
        p_t, p_h, p_w = self.transformer.config.patch_size
        grid = hidden.unflatten(1, (frames // p_t, height // p_h, width // p_w))  # [V, T', h', w', D]
        return grid[:, self.feature_slot()].permute(0, 3, 1, 2)  # [V, D, h', w']

    def features(self, pixels: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> torch.Tensor:
        return self.dit_features(self.dit_inputs(pixels, scene, frame_ids), self.early_exit)


class WanVACEEncoder(WanEncoder):
    """Wan2.1 VACE: the first frame of the list is the reference image of every frame (context_scale 1.0)."""

    def __init__(self, encoder_id: str, transformer: torch.nn.Module, vae: torch.nn.Module, text_embedding: torch.Tensor,
                 cfg: GenerativeConfig, grid: int, device: torch.device | str, weights_id: str) -> None:
        super().__init__(encoder_id, transformer, vae, text_embedding, cfg, grid, device, weights_id)
        self.released_layout = cfg.vace_layout == "released"

    def feature_slot(self) -> int:
        return 1  # ours: slot 0 is the reference image; released: slot 1 is the padding after the frame

    def dit_inputs(self, pixels: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> dict[str, torch.Tensor]:
        count = pixels.shape[0]
        frame = self.latents(pixels)  # [V, 16, 1, h, w]
        reference = self.latents(pixels[:1]).expand(count, -1, -1, -1, -1)  # [V, 16, 1, h, w]
        inactive = self.latents(torch.zeros_like(pixels[:1])).expand(count, -1, -1, -1, -1)
        zeros = torch.zeros_like(frame)
        context_frame = torch.cat([inactive, frame], dim=1)  # [V, 32, 1, h, w]
        context_ref = torch.cat([reference, zeros], dim=1)  # [V, 32, 1, h, w]
        scale = self.vae.config.scale_factor_spatial
        patch = self.transformer.config.patch_size[1]
        h, w = frame.shape[-2:]
        h, w = h // patch * patch, w // patch * patch
        mask = torch.ones(count, scale * scale, 1, h, w, device=self.device)  # [V, 64, 1, h, w]
        context = torch.cat(
            [torch.cat([context_ref, torch.zeros_like(mask)], dim=1), torch.cat([context_frame, mask], dim=1)],
            dim=2,
        )  # [V, 96, 2, h, w]
        if self.released_layout:
            noisy = self.noised(frame, scene, frame_ids)
            noisy = torch.cat([noisy, torch.zeros_like(noisy)], dim=2)  # [V, 16, 2, h, w]: frame, padding
        else:
            noisy = self.noised(torch.cat([reference, frame], dim=2), scene, frame_ids)  # [V, 16, 2, h, w]
        return {
            "hidden_states": noisy.to(self.dtype),
            "timestep": torch.full((count,), self.timestep, device=self.device),
            "encoder_hidden_states": self.text.expand(count, -1, -1),
            "control_hidden_states": context.to(self.dtype),
            "control_hidden_states_scale": torch.ones(len(self.transformer.config.vace_layers), device=self.device),
        }


def _meta_modules(config_dir: Path, variant: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Transformer and VAE built from configs on the meta device (no weights read)."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel, WanVACETransformer3DModel

    cls = WanVACETransformer3DModel if variant == "vace" else WanTransformer3DModel
    with torch.device("meta"):
        transformer = cls.from_config(cls.load_config(str(config_dir), subfolder="transformer"))
        vae = AutoencoderKLWan.from_config(AutoencoderKLWan.load_config(str(config_dir), subfolder="vae"))
    return transformer.eval(), vae.eval()


def meta_config_dir(folder: Path, variant: str, config_dir: str | None) -> Path:
    """Config folder for a meta build: the given one, the checkpoint's own, or the shipped paper config."""
    if config_dir:
        return Path(config_dir)
    if folder.is_dir():
        return ckpt.wan_config_dir(folder, variant, None)
    return ckpt.assets_dir(ckpt.WAN_SHIPPED_CONFIGS[(variant, 1536)])


def build_wan(cfg: GenerativeConfig, grid: int, device: torch.device | str, variant: str) -> WanEncoder:
    """Load (or, on the meta device, only construct) a Wan encoder; ``variant`` is 't2v' or 'vace'."""
    device = torch.device(device)
    folder = Path(cfg.checkpoint)
    encoder_cls = WanVACEEncoder if variant == "vace" else WanEncoder
    encoder_id = "wan_vace" if variant == "vace" else "wan_t2v"
    if device.type == "meta":
        transformer, vae = _meta_modules(meta_config_dir(folder, variant, cfg.config_dir), variant)
        text = torch.zeros(WAN_TEXT_LENGTH, transformer.config.text_dim, device="meta")
        return encoder_cls(encoder_id, transformer, vae, text, cfg, grid, device, "meta")
    if not folder.is_dir():
        raise ckpt.CheckpointError(f"{folder}: missing; expected a Wan2.1 {variant.upper()} checkpoint folder")
    transformer = ckpt.load_wan_transformer(folder, variant, cfg.config_dir, device)
    vae = ckpt.load_wan_vae(folder, variant, cfg.config_dir, device)
    text = empty_prompt_embedding(
        "umt5",
        ckpt.weights_fingerprint(ckpt.wan_text_paths(folder)),
        WAN_TEXT_LENGTH,
        trim=True,
        load_text_encoder=lambda: ckpt.load_wan_text_encoder(folder, variant, cfg.config_dir, device),
    )
    weights_id = ckpt.weights_fingerprint([folder])
    return encoder_cls(encoder_id, transformer, vae, text, cfg, grid, device, weights_id)
