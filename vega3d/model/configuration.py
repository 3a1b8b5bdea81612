"""The transformers config of the VEGA-3D model, built from ``vega3d.config.ModelConfig``.

It nests a ``SiglipVisionConfig`` (the tower with its last layer already dropped, no head) and a
``Qwen2Config``; every geometry number (image size, patch, 27x27 patch grid, 14x14 pooled grid, widths)
comes from the run configuration so presets shrink the model without touching code.
"""

from __future__ import annotations

from transformers import PreTrainedConfig, Qwen2Config, SiglipVisionConfig
from transformers.configuration_utils import SubConfigSpec

from vega3d.config import ModelConfig

# Qwen2 ChatML special tokens present in every Qwen2 tokenizer (also in the tiny one we train).
QWEN_PAD_TOKEN = "<|endoftext|>"
IGNORE_INDEX = -100  # label of tokens the LM loss skips (prompt, visual tokens, padding)
QWEN_IM_START = "<|im_start|>"
QWEN_IM_END = "<|im_end|>"


class Vega3DConfigHF(PreTrainedConfig):
    """Composite config: ``vision_config`` (SigLIP), ``text_config`` (Qwen2) and the VEGA-3D settings.

    ``generative_channels`` = C of the frozen generative features [V, C, g, g]; 0 builds the
    Video-3D-LLM baseline (no generative projector, no fusion).
    """

    model_type = "vega3d"
    sub_configs_defaults = {
        "vision_config": SubConfigSpec(config_class=SiglipVisionConfig),
        "text_config": SubConfigSpec(config_class=Qwen2Config),
    }
    vision_config: dict | SiglipVisionConfig | None = None
    text_config: dict | Qwen2Config | None = None
    pooled_grid: int = 14
    generative_channels: int = 0
    fusion: str = "token_gated"
    position_encoding: str = "avg-discrete-sin3d"
    ground_temperature: float = 0.07
    ground_box_margin: float = 0.0
    image_token_id: int | None = None
    ground_token_id: int | None = None
    coord_token_id: int | None = None
    im_end_token_id: int | None = None  # ends the instruction the context fusions pool
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False

    @property
    def patch_grid(self) -> int:
        """Side of the SigLIP patch grid (384 // 14 = 27)."""
        return self.vision_config.image_size // self.vision_config.patch_size

    @property
    def tokens_per_frame(self) -> int:
        """Visual tokens per frame in the LLM sequence: grid x (grid + 1) with the row newlines."""
        return self.pooled_grid * (self.pooled_grid + 1)

    @property
    def hidden_size(self) -> int:
        """LLM width d."""
        return self.text_config.hidden_size


def vision_config_from(model_cfg: ModelConfig) -> SiglipVisionConfig:
    """The SigLIP config of the tower as used: one layer fewer when ``drop_last_layer``, no pooling head."""
    vision = model_cfg.vision
    layers = vision.num_hidden_layers - (1 if vision.drop_last_layer else 0)
    return SiglipVisionConfig(
        hidden_size=vision.hidden_size,
        intermediate_size=vision.intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=vision.num_attention_heads,
        image_size=vision.image_size,
        patch_size=vision.patch_size,
        num_channels=3,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
        vision_use_head=False,
    )


def text_config_from(model_cfg: ModelConfig) -> Qwen2Config:
    """The Qwen2 config from the run configuration (defaults = Qwen2-7B)."""
    llm = model_cfg.llm
    return Qwen2Config(
        vocab_size=llm.vocab_size,
        hidden_size=llm.hidden_size,
        intermediate_size=llm.intermediate_size,
        num_hidden_layers=llm.num_hidden_layers,
        num_attention_heads=llm.num_attention_heads,
        num_key_value_heads=llm.num_key_value_heads,
        max_position_embeddings=llm.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": llm.rope_theta},
        rms_norm_eps=llm.rms_norm_eps,
        tie_word_embeddings=llm.tie_word_embeddings,
        hidden_act="silu",
        use_sliding_window=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def build_hf_config(
    model_cfg: ModelConfig,
    generative_channels: int = 0,
    token_ids: dict[str, int] | None = None,
) -> Vega3DConfigHF:
    """``ModelConfig`` (+ C of the generative features, + special token ids) -> ``Vega3DConfigHF``."""
    token_ids = token_ids or {}
    config = Vega3DConfigHF(
        vision_config=vision_config_from(model_cfg),
        text_config=text_config_from(model_cfg),
        pooled_grid=model_cfg.pooled_grid,
        generative_channels=generative_channels,
        fusion=model_cfg.fusion,
        position_encoding=model_cfg.position_encoding,
        ground_temperature=model_cfg.ground_temperature,
        ground_box_margin=model_cfg.ground_box_margin,
        image_token_id=token_ids.get("image"),
        ground_token_id=token_ids.get("ground"),
        coord_token_id=token_ids.get("coord"),
        im_end_token_id=token_ids.get("im_end"),
        tie_word_embeddings=model_cfg.llm.tie_word_embeddings,
    )
    attn = model_cfg.attn_implementation
    if attn == "flash_attention_2" and not _flash_attn_available():
        raise ValueError(
            "model.attn_implementation=flash_attention_2 needs the flash-attn package (pip install 'vega3d[cuda]'); "
            "use sdpa instead"
        )
    config._attn_implementation = attn
    return config


def _flash_attn_available() -> bool:
    from importlib.util import find_spec

    return find_spec("flash_attn") is not None
