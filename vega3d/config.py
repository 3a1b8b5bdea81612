"""Every setting of VEGA-3D as pydantic models, and YAML presets over them.

The defaults are the paper settings (SPEC.md); presets in ``vega3d/presets/*.yaml`` override them
(``tiny`` = CPU demo and tests). ``load_config("tiny", ["train.lr=1e-4"])`` resolves a preset plus
dotted overrides and fails with the field name and the allowed values when anything is invalid.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

TaskName = Literal["scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d"]
ALL_TASKS: tuple[str, ...] = ("scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d")
SamplingName = Literal["uniform", "max-coverage", "mc-ratio95"]
FusionName = Literal["token_gated", "add", "concat", "weighted", "gated", "cross_attention", "only", "none"]
BackboneName = Literal[
    "none", "wan_t2v", "wan_vace", "sd21", "vae", "svd", "dinov3", "vjepa2", "vggt", "seva", "vmem"
]


class ConfigError(ValueError):
    """A setting is invalid; the message names the dotted field, the value and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticConfig(_Section):
    """Size of the synthetic ScanNet-like data set written by ``vega3d data synth``."""

    num_train: int = Field(8, ge=1, le=10_000, description="train scenes")
    num_val: int = Field(3, ge=1, le=10_000, description="val scenes")
    num_test: int = Field(2, ge=1, le=10_000, description="test scenes (SQA3D test split)")
    frames: int = Field(64, ge=4, le=10_000, description="frames per scene in the posed_images list")
    width: int = Field(640, ge=32, le=4096, description="RGB-D frame width in pixels")
    height: int = Field(480, ge=24, le=4096, description="RGB-D frame height in pixels")
    min_objects: int = Field(4, ge=1, le=64)
    max_objects: int = Field(10, ge=1, le=64)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _objects_range(self) -> SyntheticConfig:
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects ({self.min_objects}) must be <= max_objects ({self.max_objects})")
        return self


class DataConfig(_Section):
    """Where the data lives and how frames are sampled (SPEC.md sections 1 and 5)."""

    root: str = Field("data", description="data root: local folder or s3://bucket/prefix")
    frames_upbound: int = Field(32, ge=1, le=512, description="frames per sample")
    sampling: SamplingName = "uniform"
    frame_stride: int = Field(10, ge=1, le=100, description="the frame list holds every Nth sensor frame")
    voxel_size: float = Field(0.1, gt=0.0, le=1.0, description="metres per voxel for frame coverage")
    coverage_ratio: float = Field(0.95, gt=0.0, le=1.0, description="stop ratio of mc-ratio95")
    tasks: list[TaskName] = Field(default_factory=lambda: list(ALL_TASKS))
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)


class VisionConfig(_Section):
    """SigLIP vision tower (so400m-patch14-384 in the paper) with its last layer removed."""

    hidden_size: int = Field(1152, ge=8)
    intermediate_size: int = Field(4304, ge=8)
    num_hidden_layers: int = Field(27, ge=1, description="layers of the published tower (one is dropped)")
    num_attention_heads: int = Field(16, ge=1)
    image_size: int = Field(384, ge=14)
    patch_size: int = Field(14, ge=1)
    drop_last_layer: bool = True
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def grid(self) -> int:
        """Patch grid side: 384 // 14 = 27."""
        return self.image_size // self.patch_size


class LLMConfig(_Section):
    """Qwen2 language model (Qwen2-7B in LLaVA-Video-7B-Qwen2)."""

    hidden_size: int = Field(3584, ge=8)
    intermediate_size: int = Field(18944, ge=8)
    num_hidden_layers: int = Field(28, ge=1)
    num_attention_heads: int = Field(28, ge=1)
    num_key_value_heads: int = Field(4, ge=1)
    vocab_size: int = Field(152064, ge=16)
    max_position_embeddings: int = Field(32768, ge=16)
    rope_theta: float = Field(1_000_000.0, gt=0)
    rms_norm_eps: float = Field(1e-6, gt=0)
    tie_word_embeddings: bool = False


class ModelConfig(_Section):
    """The VEGA-3D model (SPEC.md section 2)."""

    checkpoint: str = Field(
        "models/LLaVA-Video-7B-Qwen2",
        description="LLaVA-Video folder or our own saved model; relative paths are under data.root",
    )
    vision: VisionConfig = Field(default_factory=VisionConfig)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    projector: Literal["mlp2x_gelu"] = "mlp2x_gelu"
    pooled_grid: int = Field(14, ge=1, description="token grid side after bilinear pooling")
    fusion: FusionName = "token_gated"
    position_encoding: Literal["avg-discrete-sin3d", "avg-sin3d", "none"] = "avg-discrete-sin3d"
    spatial_instruction: bool = Field(True, description="add the 3D instruction after <image>")
    spatial_instruction_at_eval: bool = Field(True, description="False reproduces the original evaluation")
    ground_head: Literal["infonce"] = "infonce"
    ground_temperature: float = Field(0.07, gt=0)
    ground_box_margin: float = Field(
        0.0, ge=0, le=1.0,
        description="metres added to every side of a box when choosing its patches for the object feature "
                    "(box-shaped synthetic objects need ~0.02: their surfaces lie exactly on the box faces)",
    )
    multi3drefer_threshold: float = Field(0.4, gt=0, le=1.0, description="θ: 0.4 released code, 0.25 paper")
    max_proposals: int = Field(50, ge=1)
    max_length: int = Field(32768, ge=16)
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    gradient_checkpointing: bool = True


class GenerativeConfig(_Section):
    """Frozen generative feature source (SPEC.md section 3)."""

    backbone: BackboneName = "wan_t2v"
    checkpoint: str = Field(
        "models/Wan2.1-T2V-1.3B", description="weights folder; relative paths are under data.root"
    )
    config_dir: str | None = Field(
        None, description="diffusers config folder for an original-layout checkpoint (default: the shipped one)"
    )
    mode: Literal["online", "offline"] = "online"
    feature_id: str | None = Field(None, description="offline feature id in the feature store")
    feature_root: str | None = Field(None, description="feature store URI (default: <data.root>/features)")
    timestep: int = Field(300, ge=0, le=1000)
    block: int = Field(20, ge=0, description="DiT block whose output is tapped (Wan)")
    resolution: tuple[int, int] = Field((832, 480), description="(width, height) of the encoder input")
    shift: float = Field(5.0, gt=0)
    seed: int = Field(0, ge=0)
    crop: Literal["same", "center_vertical"] = "same"
    early_exit: bool = True
    cache_size: int = Field(64, ge=0, description="online mode: feature sets kept in memory")


class TrainConfig(_Section):
    """Training recipe (SPEC.md section 6)."""

    output_uri: str = Field("runs/train", description="checkpoints and the final model: path or s3://")
    lr: float = Field(1e-5, gt=0)
    vision_lr: float = Field(2e-6, ge=0)
    head_lr: float | None = Field(None, gt=0, description="grounding head lr; None = train.lr (the paper)")
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    lr_scheduler: Literal["cosine", "constant", "linear"] = "cosine"
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1: run the epochs")
    per_device_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(16, ge=1)
    zero_stage: Literal[0, 2, 3] = 3
    offload: bool = False
    precision: Literal["bf16", "fp32"] = "bf16"
    max_grad_norm: float = Field(1.0, gt=0)
    trainable: list[Literal["vision", "llm", "projector", "generative_projector", "fusion", "newline", "ground_head"]] = (
        Field(default_factory=lambda: ["vision", "llm", "projector", "generative_projector", "fusion", "newline", "ground_head"])
    )
    save_steps: int = Field(500, ge=1)
    save_total_limit: int = Field(2, ge=1)
    logging_steps: int = Field(1, ge=1)
    seed: int = Field(42, ge=0)
    nproc: int = Field(1, ge=1, description="processes on this node")
    num_workers: int = Field(2, ge=0)


class EvalConfig(_Section):
    """Evaluation (SPEC.md section 4)."""

    tasks: list[TaskName] = Field(default_factory=lambda: list(ALL_TASKS))
    output_uri: str = Field("runs/eval", description="predictions and metrics: path or s3://")
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    num_shards: int = Field(1, ge=1)
    caption_iou: float = Field(0.5, gt=0, le=1)
    max_samples: int | None = Field(None, ge=1, description="cap per task (smoke runs)")


class TrackingConfig(_Section):
    """MLflow tracking."""

    uri: str | None = Field(None, description="MLflow tracking URI; None = no tracking")
    experiment: str = "vega3d"
    registered_model: str = "vega3d"
    gate_metrics: list[str] = Field(
        default_factory=lambda: [
            "scanrefer/acc_iou25", "multi3drefer/f1_iou25", "scan2cap/cider_iou50", "scanqa/cider", "sqa3d/em"
        ],
        description="metrics (higher is better) a new model must not lose on, and win on one, to become champion",
    )


class Vega3DConfig(_Section):
    """The whole resolved configuration of one run."""

    preset: str = "paper"
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    generative: GenerativeConfig = Field(default_factory=GenerativeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    def with_paths_under_root(self) -> Vega3DConfig:
        """Copy whose relative checkpoint paths are joined onto ``data.root`` (absolute paths and URIs stay)."""
        from vega3d.storage import join

        def under_root(path: str) -> str:
            return path if "://" in path or Path(path).is_absolute() else join(self.data.root, path)

        return self.model_copy(
            update={
                "model": self.model.model_copy(update={"checkpoint": under_root(self.model.checkpoint)}),
                "generative": self.generative.model_copy(
                    update={"checkpoint": under_root(self.generative.checkpoint)}
                ),
            }
        )

    def to_flat_dict(self) -> dict[str, Any]:
        """Dotted keys -> values, e.g. for MLflow params."""
        return _flatten(self.model_dump(mode="json"))


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def available_presets() -> list[str]:
    """Names of the presets shipped in vega3d/presets."""
    folder = resources.files("vega3d") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _preset_tree(name_or_path: str) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and "://" in name_or_path:
        from vega3d.storage import read_text

        text = read_text(name_or_path)  # a resolved config published under the storage root
    elif path.suffix in (".yaml", ".yml") and path.exists():
        text = path.read_text()
    else:
        resource = resources.files("vega3d") / "presets" / f"{name_or_path}.yaml"
        if not resource.is_file():
            raise ConfigError(
                f"unknown preset {name_or_path!r}: choose one of {available_presets()} or give a .yaml file"
            )
        text = resource.read_text()
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"preset {name_or_path}: not valid YAML{where} ({getattr(error, 'problem', error)})") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"preset {name_or_path!r} must be a YAML mapping, got {type(tree).__name__}")
    parent = tree.pop("inherit", None)
    if parent:
        tree = _deep_merge(_preset_tree(parent), tree)
    tree.setdefault("preset", path.stem if path.suffix in (".yaml", ".yml") else name_or_path)
    return tree


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"train.lr=1e-4"`` -> (["train", "lr"], 1e-4); the value is parsed as YAML."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like section.field=value (e.g. train.lr=1e-4)")
    key, raw = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def format_validation_error(error: ValidationError) -> str:
    """One line per invalid field: dotted name, given value, and what is allowed."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        lines.append(f"{field}: {item['msg']} (got {item.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def build_config(tree: dict[str, Any]) -> Vega3DConfig:
    """Validate a nested dict into a config, raising ConfigError with field names."""
    try:
        return Vega3DConfig.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error)) from None


def load_config(preset: str = "tiny", overrides: list[str] | None = None) -> Vega3DConfig:
    """Resolve a preset name (or YAML path) plus dotted ``key=value`` overrides."""
    tree = _preset_tree(preset)
    for item in overrides or []:
        keys, value = parse_override(item)
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {key!r} is not a section")
        node[keys[-1]] = value
    return build_config(tree)


def save_config(config: Vega3DConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (what a run used, for reproduction)."""
    Path(path).write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
