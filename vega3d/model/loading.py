"""Model loading: LLaVA-Video-7B-Qwen2 as published and our own saved format -> ``Vega3DModel``.

LLaVA-Video layout (config.json of ``LlavaQwenForCausalLM`` + sharded safetensors with
``model.safetensors.index.json`` + the Qwen2 tokenizer files):
    model.vision_tower.vision_tower.vision_model.{embeddings,encoder.layers.N,post_layernorm}.*  (26 layers)
    model.mm_projector.{0,2}.{weight,bias}     model.image_newline
    model.{embed_tokens,layers.N,norm}.*       lm_head.weight
Our module names: vision_tower.*, mm_projector.*, image_newline, language_model.{model,lm_head}.*.
The SigLIP post-layernorm is stored by LLaVA but never used (features are taken before it): its
keys are skipped, and so is the tower's last layer if a checkpoint still holds it (it is the dropped one). The new VEGA-3D modules (generative projector, fusion, grounding head)
are the only keys allowed to be missing; anything else missing or unexpected fails with the keys.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers.initialization import no_init_weights

from vega3d.config import ModelConfig
from vega3d.errors import CheckpointError
from vega3d.model.configuration import Vega3DConfigHF, build_hf_config
from vega3d.model.modeling_vega3d import Vega3DModel, enable_gradient_checkpointing
from vega3d.model.tokenizer import add_special_tokens, load_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

LLAVA_VIDEO_ASSET = "LLaVA-Video-7B-Qwen2"
SIGLIP_ASSET = "siglip-so400m-patch14-384"
INDEX_FILE = "model.safetensors.index.json"

# LLaVA-Video key -> our key (regex, applied in order, first match wins).
_TO_OURS: list[tuple[str, str]] = [
    (r"^model\.vision_tower\.vision_tower\.vision_model\.", "vision_tower."),
    (r"^model\.mm_projector\.", "mm_projector."),
    (r"^model\.image_newline$", "image_newline"),
    (r"^model\.(embed_tokens|layers|norm)\.", r"language_model.model.\1."),
    (r"^lm_head\.", "language_model.lm_head."),
]
_TO_LLAVA: list[tuple[str, str]] = [
    (r"^vision_tower\.", "model.vision_tower.vision_tower.vision_model."),
    (r"^mm_projector\.", "model.mm_projector."),
    (r"^image_newline$", "model.image_newline"),
    (r"^language_model\.model\.", "model."),
    (r"^language_model\.lm_head\.", "lm_head."),
]
# Stored by LLaVA-Video, unused by the model (features are read before the post-layernorm).
_SKIPPED = re.compile(r"^model\.vision_tower\.vision_tower\.vision_model\.(post_layernorm|head)\.")
# Modules VEGA-3D adds on top of LLaVA-Video: initialised fresh when loading the published weights.
NEW_MODULES = ("generative_projector.", "fusion.", "ground_head.")
# (config.json key, LLMConfig field) pairs that must agree between a LLaVA-Video folder and the run.
_LLM_FIELDS = [
    ("hidden_size", "hidden_size"), ("intermediate_size", "intermediate_size"),
    ("num_hidden_layers", "num_hidden_layers"), ("num_attention_heads", "num_attention_heads"),
    ("num_key_value_heads", "num_key_value_heads"), ("vocab_size", "vocab_size"),
    ("rope_theta", "rope_theta"), ("rms_norm_eps", "rms_norm_eps"), ("tie_word_embeddings", "tie_word_embeddings"),
]


def asset_config(name: str) -> dict[str, Any]:
    """The shipped config.json of a supported published model (``LLaVA-Video-7B-Qwen2``, SigLIP so400m)."""
    return json.loads((resources.files("vega3d") / "assets" / name / "config.json").read_text())


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, target in rules:
        if re.match(pattern, key):
            return re.sub(pattern, target, key)
    return None


def to_ours(key: str) -> str | None:
    """LLaVA-Video key -> our parameter name (None when the key has no place in our model)."""
    return _rename(key, _TO_OURS)


def to_llava(key: str) -> str | None:
    """Our parameter name -> LLaVA-Video key (None for the VEGA-3D additions)."""
    return _rename(key, _TO_LLAVA)


def is_llava_video_folder(path: str | Path) -> bool:
    """True for a LLaVA-Video folder, False for our own format (config model_type ``vega3d``)."""
    config = json.loads((Path(path) / "config.json").read_text())
    return config.get("model_type") != Vega3DConfigHF.model_type


def _check_llm_fields(path: Path, config: dict[str, Any], model_cfg: ModelConfig) -> None:
    diffs = []
    for key, field in _LLM_FIELDS:
        want = getattr(model_cfg.llm, field)
        if key in config and config[key] != want:
            diffs.append(f"model.llm.{field}: checkpoint {config[key]!r}, run config {want!r}")
    if config.get("mm_hidden_size", model_cfg.vision.hidden_size) != model_cfg.vision.hidden_size:
        diffs.append(f"model.vision.hidden_size: checkpoint mm_hidden_size {config['mm_hidden_size']!r}, "
                     f"run config {model_cfg.vision.hidden_size!r}")
    if diffs:
        raise CheckpointError(f"{path}/config.json does not match the model configuration (fix the preset or "
                              "pass overrides):\n  " + "\n  ".join(diffs))


def _iter_shards(path: Path) -> Iterable[Path]:
    index = path / INDEX_FILE
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        yield from (path / name for name in sorted(set(weight_map.values())))
    elif (path / "model.safetensors").exists():
        yield path / "model.safetensors"
    else:
        raise CheckpointError(f"{path}: no {INDEX_FILE} and no model.safetensors")


def load_llava_video(
    path: str | Path,
    model_cfg: ModelConfig,
    generative_channels: int = 0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Vega3DModel, PreTrainedTokenizerBase]:
    """Build the VEGA-3D model from a LLaVA-Video folder: published weights, new modules freshly
    initialised, special tokens added (rows = mean of existing rows). Loads shard by shard."""
    from safetensors.torch import load_file

    path = Path(path)
    _check_llm_fields(path, json.loads((path / "config.json").read_text()), model_cfg)
    config = build_hf_config(model_cfg, generative_channels)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with no_init_weights():  # every published weight is overwritten: skip the random init of 8B numbers
            model = Vega3DModel(config)
    finally:
        torch.set_default_dtype(previous)
    expected = set(model.state_dict())
    # a checkpoint that still holds the tower's last layer: that layer is the one dropped, skip it
    kept = config.vision_config.num_hidden_layers
    dropped_layer = f"model.vision_tower.vision_tower.vision_model.encoder.layers.{kept}."
    loaded: set[str] = set()
    unexpected: list[str] = []
    for shard in _iter_shards(path):
        renamed = {}
        for key, tensor in load_file(str(shard)).items():
            ours = to_ours(key)
            if ours in expected:
                renamed[ours] = tensor
            elif not (_SKIPPED.match(key) or key.startswith(dropped_layer)):
                unexpected.append(key)
        model.load_state_dict(renamed, strict=False)
        loaded.update(renamed)
    missing = sorted(k for k in expected - loaded if not k.startswith(NEW_MODULES))
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not match the model.\n  missing: {missing}\n  "
                              f"unexpected: {sorted(unexpected)}")
    for name in NEW_MODULES:  # the VEGA-3D additions are not in the checkpoint: initialise them now
        module = getattr(model, name.rstrip("."))
        if module is not None:
            for sub in reversed(list(module.modules())):  # children before their parent, as in post_init
                model._init_weights(sub)
    tokenizer = load_tokenizer(path)
    add_special_tokens(tokenizer, model)
    _apply_runtime_settings(model, model_cfg)
    return model, tokenizer


def save_model(model: Vega3DModel, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> None:
    """Our format: ``save_pretrained`` folder (config model_type ``vega3d`` + safetensors) + tokenizer.

    Written to ``<path>.tmp`` then renamed, so a reader never sees half a model.
    """
    import shutil

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def load_saved_model(
    path: str | Path, model_cfg: ModelConfig | None = None, dtype: torch.dtype = torch.float32
) -> tuple[Vega3DModel, PreTrainedTokenizerBase]:
    """Load our own format; every key must match exactly."""
    path = Path(path)
    model, info = Vega3DModel.from_pretrained(str(path), dtype=dtype, output_loading_info=True)
    problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        raise CheckpointError(f"{path}: weights do not match the saved config: {problems}")
    tokenizer = load_tokenizer(path)
    add_special_tokens(tokenizer, model)  # ids only: the saved tokenizer already has the tokens
    if model_cfg is not None:
        _apply_runtime_settings(model, model_cfg)
    return model, tokenizer


def load_model(
    path: str | Path, model_cfg: ModelConfig, generative_channels: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[Vega3DModel, PreTrainedTokenizerBase]:
    """Either format, told apart by config.json. For our format ``generative_channels`` must match."""
    if is_llava_video_folder(path):
        return load_llava_video(path, model_cfg, generative_channels, dtype)
    model, tokenizer = load_saved_model(path, model_cfg, dtype)
    if model.config.generative_channels != generative_channels:
        raise CheckpointError(f"{path}: saved with generative_channels={model.config.generative_channels}, the run "
                              f"asks for {generative_channels} (generative.backbone must match the saved model)")
    return model, tokenizer


def _apply_runtime_settings(model: Vega3DModel, model_cfg: ModelConfig) -> None:
    """Settings of the run rather than of the weights: they follow the run's config for a saved model too."""
    model.config._attn_implementation = model_cfg.attn_implementation
    model.config.ground_box_margin = model_cfg.ground_box_margin
    if model_cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)


def llava_video_config(model_cfg: ModelConfig) -> dict[str, Any]:
    """config.json of a LLaVA-Video folder for ``model_cfg``: the published fields, sizes from the config."""
    config = asset_config(LLAVA_VIDEO_ASSET)
    config.update({field: getattr(model_cfg.llm, attr) for field, attr in _LLM_FIELDS})
    config.update({
        "_name_or_path": "vega3d/tiny-llava-video",
        "max_position_embeddings": model_cfg.llm.max_position_embeddings,
        "max_window_layers": model_cfg.llm.num_hidden_layers,
        "mm_hidden_size": model_cfg.vision.hidden_size,
        "tokenizer_model_max_length": model_cfg.max_length,
        "torch_dtype": "float32",
    })
    return config
