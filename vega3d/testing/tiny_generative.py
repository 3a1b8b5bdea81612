"""Writers of tiny random-initialised checkpoints of every generative family, in the real on-disk formats.

Tests and the demo load them through the same code that loads the real weights (``vega3d.generative.weights``). The Wan
writer writes the same random weights twice: in the diffusers layout and in the original Wan2.1 layout
(original key names, ``Wan2.1_VAE.pth``, ``models_t5_umt5-xxl-enc-bf16.pth``, ``google/umt5-xxl``). The
original names are produced by inverting diffusers' converters here and checked by running those converters
on the result, so loading the original layout must give back exactly the diffusers weights.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vega3d.generative import weights as ckpt

TINY_WAN_TRANSFORMER = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 32,
    "ffn_dim": 64,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
TINY_WAN_VAE = {"base_dim": 8, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": []}
TINY_UMT5 = {
    "vocab_size": 64,
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 2,
    "num_heads": 4,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
    "is_encoder_decoder": True,
    "tie_word_embeddings": False,
    "pad_token_id": 0,
    "eos_token_id": 1,
}
TINY_WORDS = ("a", "chair", "table", "room", "the", "is", "on", "next", "to", "bed")

# diffusers WanTransformer3DModel / WanVACETransformer3DModel key -> original Wan key (ordered regex rules).
_WAN_DIT_TO_ORIGINAL: tuple[tuple[str, str], ...] = (
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"\.scale_shift_table$", ".modulation"),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_out\.0\.", ".o."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
    (r"^(blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(vace_blocks\.\d+)\.norm2\.", r"\1.norm3."),
    (r"^(vace_blocks\.\d+)\.proj_in\.", r"\1.before_proj."),
    (r"^(vace_blocks\.\d+)\.proj_out\.", r"\1.after_proj."),
)
_VAE_RESNET_PARTS = (
    (r"\.norm1\.gamma$", ".residual.0.gamma"),
    (r"\.conv1\.", ".residual.2."),
    (r"\.norm2\.gamma$", ".residual.3.gamma"),
    (r"\.conv2\.", ".residual.6."),
    (r"\.conv_shortcut\.", ".shortcut."),
)


def _rewrite(key: str, rules: tuple[tuple[str, str], ...]) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def wan_dit_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers Wan DiT state dict -> original Wan key names."""
    return {_rewrite(key, _WAN_DIT_TO_ORIGINAL): value for key, value in state.items()}


def _wan_vae_key_to_original(key: str) -> str:
    top = {"quant_conv": "conv1", "post_quant_conv": "conv2"}
    head, _, rest = key.partition(".")
    if head in top:
        return f"{top[head]}.{rest}"
    coder, _, rest = key.partition(".")
    rest = re.sub(r"^conv_in\.", "conv1.", rest)
    rest = re.sub(r"^norm_out\.", "head.0.", rest)
    rest = re.sub(r"^conv_out\.", "head.2.", rest)
    rest = re.sub(r"^mid_block\.attentions\.0\.", "middle.1.", rest)
    rest = re.sub(r"^mid_block\.resnets\.(\d)\.", lambda m: f"middle.{2 * int(m.group(1))}.", rest)
    rest = re.sub(r"^down_blocks\.", "downsamples.", rest)
    rest = re.sub(r"^up_blocks\.(\d+)\.resnets\.(\d+)\.", lambda m: f"upsamples.{4 * int(m[1]) + int(m[2])}.", rest)
    rest = re.sub(r"^up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"upsamples.{4 * int(m[1]) + 3}.", rest)
    if re.match(r"^(middle\.[02]|downsamples\.\d+|upsamples\.\d+)\.", rest):
        rest = _rewrite(rest, _VAE_RESNET_PARTS)
    return f"{coder}.{rest}"


def wan_vae_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKLWan state dict -> original ``Wan2.1_VAE.pth`` key names."""
    return {_wan_vae_key_to_original(key): value for key, value in state.items()}


def _check_inverse(
    original: dict[str, torch.Tensor], diffusers_state: dict[str, torch.Tensor], convert: Callable, what: str
) -> None:
    """Run diffusers' converter on ``original`` and require exactly ``diffusers_state`` back."""
    back = convert(checkpoint=dict(original))
    if set(back) != set(diffusers_state) or any(back[k] is not diffusers_state[k] for k in back):
        wrong = sorted(set(back) ^ set(diffusers_state))[:5]
        raise AssertionError(f"{what}: original key names do not convert back to diffusers ({wrong})")


def write_tiny_tokenizer(folder: Path, specials: tuple[str, ...] = ("<pad>", "</s>", "<unk>"),
                         template: str = "$A </s>", eos: str = "</s>", pad: str = "<pad>") -> None:
    """A word-level tokenizer: ``specials`` get ids 0.., then a few words; ``template`` adds the special tokens.

    The default has umT5's special ids (<pad> 0, </s> 1, <unk> 2) and appends </s>.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate(specials)}
    vocab.update({w: len(specials) + i for i, w in enumerate(TINY_WORDS)})
    unk = next(t for t in specials if "unk" in t)
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    used = [t for t in specials if t in template]
    backend.post_processor = processors.TemplateProcessing(single=template, special_tokens=[(t, vocab[t]) for t in used])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=eos, pad_token=pad, unk_token=unk)
    tokenizer.save_pretrained(str(folder))


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def write_tiny_wan(
    folder: str | Path,
    variant: str = "t2v",
    num_layers: int = 2,
    seed: int = 0,
    original_folder: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write one tiny random Wan2.1 model in the diffusers layout (``folder``) and the original layout.

    Returns (diffusers folder, original folder); the original goes to ``<folder>-original`` by default.
    ``variant`` 'vace' writes a WanVACETransformer3DModel (VACE hints at every other layer).
    """
    from diffusers import AutoencoderKLWan, WanTransformer3DModel, WanVACETransformer3DModel
    from diffusers.loaders.single_file_utils import (
        convert_wan_transformer_to_diffusers,
        convert_wan_vae_to_diffusers,
    )
    from safetensors.torch import save_file
    from transformers import UMT5Config, UMT5EncoderModel

    folder = Path(folder)
    original = Path(original_folder) if original_folder else folder.with_name(folder.name + "-original")
    torch.manual_seed(seed)
    dit_config = dict(TINY_WAN_TRANSFORMER, num_layers=num_layers)
    if variant == "vace":
        dit_config.update(vace_layers=list(range(0, num_layers, 2)), vace_in_channels=96)
        transformer = WanVACETransformer3DModel(**dit_config)
    else:
        transformer = WanTransformer3DModel(**dit_config)
    vae = AutoencoderKLWan(**TINY_WAN_VAE)
    text_encoder = UMT5EncoderModel(UMT5Config(**TINY_UMT5))

    transformer.save_pretrained(str(folder / "transformer"))
    vae.save_pretrained(str(folder / "vae"))
    text_encoder.save_pretrained(str(folder / "text_encoder"))
    write_tiny_tokenizer(folder / "tokenizer")
    _write_json(folder / "model_index.json", {
        "_class_name": "WanVACEPipeline" if variant == "vace" else "WanPipeline",
        "transformer": ["diffusers", type(transformer).__name__],
        "vae": ["diffusers", "AutoencoderKLWan"],
        "text_encoder": ["transformers", "UMT5EncoderModel"],
        "tokenizer": ["transformers", "PreTrainedTokenizerFast"],
    })

    dit_state = {k: v.contiguous() for k, v in transformer.state_dict().items()}
    dit_original = wan_dit_to_original(dit_state)
    _check_inverse(dit_original, dit_state, convert_wan_transformer_to_diffusers, "Wan DiT")
    vae_state = vae.state_dict()
    vae_original = wan_vae_to_original(vae_state)
    _check_inverse(vae_original, vae_state, convert_wan_vae_to_diffusers, "Wan VAE")
    t5_state = {k: v for k, v in text_encoder.state_dict().items() if k not in ckpt.UMT5_TIED_KEYS}
    t5_original = ckpt.rename_keys(t5_state, ckpt.UMT5_ORIGINAL_TO_HF, folder / "text_encoder", reverse=True)

    original.mkdir(parents=True, exist_ok=True)
    save_file(dit_original, str(original / ckpt.WAN_ORIGINAL_TRANSFORMER))
    torch.save(vae_original, original / ckpt.WAN_ORIGINAL_VAE)
    torch.save(t5_original, original / ckpt.WAN_ORIGINAL_T5)
    write_tiny_tokenizer(original / ckpt.WAN_ORIGINAL_TOKENIZER)
    _write_json(original / "config.json", {
        "_class_name": "WanModel",
        "model_type": variant,
        "dim": dit_config["num_attention_heads"] * dit_config["attention_head_dim"],
        "ffn_dim": dit_config["ffn_dim"],
        "freq_dim": dit_config["freq_dim"],
        "in_dim": dit_config["in_channels"],
        "out_dim": dit_config["out_channels"],
        "num_heads": dit_config["num_attention_heads"],
        "num_layers": num_layers,
        "text_len": 512,
        "eps": 1e-6,
        **({"vace_layers": list(dit_config["vace_layers"]), "vace_in_dim": dit_config["vace_in_channels"]}
           if variant == "vace" else {}),
    })
    return folder, original


def _copy_shipped_scheduler(asset: str, folder: Path) -> None:
    """The real model's scheduler config (schedules do not shrink with the model)."""
    source = ckpt.assets_dir(asset) / "scheduler" / "scheduler_config.json"
    _write_json(folder / "scheduler" / "scheduler_config.json", json.loads(source.read_text()))


def write_tiny_sd(folder: str | Path, seed: int = 0) -> Path:
    """A tiny SD2.1-base-format diffusers folder (unet, vae, text_encoder, tokenizer, scheduler)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    torch.manual_seed(seed)
    UNet2DConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True,
    ).save_pretrained(str(folder / "unet"))
    _tiny_sd_vae(AutoencoderKL).save_pretrained(str(folder / "vae"))
    CLIPTextModel(CLIPTextConfig(
        hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2, vocab_size=64,
        max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=32,
    )).save_pretrained(str(folder / "text_encoder"))
    write_tiny_tokenizer(folder / "tokenizer", ("<|startoftext|>", "<|endoftext|>", "<unk>"),
                         "<|startoftext|> $A <|endoftext|>", eos="<|endoftext|>", pad="<|endoftext|>")
    _copy_shipped_scheduler("stable-diffusion-2-1-base", folder)
    return folder


def _tiny_sd_vae(cls: type) -> torch.nn.Module:
    """A 4-level (8x downsampling) SD-style VAE of width 32."""
    return cls(block_out_channels=(32, 32, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
               **({"up_block_types": ("UpDecoderBlock2D",) * 4} if cls.__name__ == "AutoencoderKL" else {}),
               layers_per_block=1, latent_channels=4)


def write_tiny_svd(folder: str | Path, seed: int = 0) -> Path:
    """A tiny stable-video-diffusion-img2vid-format folder (unet, vae, image_encoder, scheduler)."""
    from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    folder = Path(folder)
    torch.manual_seed(seed)
    UNetSpatioTemporalConditionModel(
        sample_size=8, block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        num_attention_heads=(2, 4), addition_time_embed_dim=8, projection_class_embeddings_input_dim=24, num_frames=8,
    ).save_pretrained(str(folder / "unet"))
    _tiny_sd_vae(AutoencoderKLTemporalDecoder).save_pretrained(str(folder / "vae"))
    CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2, image_size=32,
        patch_size=16, projection_dim=32,
    )).save_pretrained(str(folder / "image_encoder"))
    _copy_shipped_scheduler("stable-video-diffusion-img2vid", folder)
    return folder


def write_tiny_dinov3(folder: str | Path, seed: int = 0) -> Path:
    """A tiny DINOv3ViTModel folder (patch 16, 4 register tokens)."""
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(seed)
    DINOv3ViTModel(DINOv3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                                   patch_size=16, num_register_tokens=4)).save_pretrained(str(folder))
    return Path(folder)


def write_tiny_vjepa2(folder: str | Path, seed: int = 0) -> Path:
    """A tiny VJEPA2Model folder (patch 16, tubelet 2)."""
    from transformers import VJEPA2Config, VJEPA2Model

    torch.manual_seed(seed)
    VJEPA2Model(VJEPA2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2.0, patch_size=16, tubelet_size=2,
        crop_size=224, frames_per_clip=8, pred_hidden_size=32, pred_num_hidden_layers=1, pred_num_attention_heads=2,
    )).save_pretrained(str(folder))
    return Path(folder)
