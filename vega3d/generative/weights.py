"""Loading frozen generative weights from local folders, offline, with clear errors.

Two layouts are accepted for Wan2.1 (SPEC.md section 3):

* the diffusers layout (``Wan-AI/Wan2.1-T2V-1.3B-Diffusers``): ``transformer/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``, each with its ``config.json``;
* the original layout (``Wan-AI/Wan2.1-T2V-1.3B``): ``config.json`` (original keys: dim, num_layers, ...),
  ``diffusion_pytorch_model.safetensors``, ``Wan2.1_VAE.pth``, ``models_t5_umt5-xxl-enc-bf16.pth`` and the
  ``google/umt5-xxl`` tokenizer folder. The transformer and VAE go through diffusers' single-file loaders
  (their key converters) with a local ``config=`` folder in the diffusers layout, the umT5 encoder through
  the key table ``UMT5_ORIGINAL_TO_HF`` into transformers' ``UMT5EncoderModel``. The config folder is the one
  shipped in ``vega3d/assets/<model>`` (chosen from the original ``config.json``) unless one is given, and the
  original ``config.json`` must agree with it.

Every missing or mismatched file fails with a ``CheckpointError`` naming the path and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from vega3d.errors import CheckpointError

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
FINGERPRINT_HEAD_BYTES = 1 << 20

WAN_ORIGINAL_TRANSFORMER = "diffusion_pytorch_model.safetensors"
WAN_ORIGINAL_VAE = "Wan2.1_VAE.pth"
WAN_ORIGINAL_T5 = "models_t5_umt5-xxl-enc-bf16.pth"
WAN_ORIGINAL_TOKENIZER = "google/umt5-xxl"

# (kind of the original config.json: "vace" when it has vace_layers, else "t2v"; dim) -> shipped diffusers
# config folder under vega3d/assets. Not model_type: third-party copies of VACE write "t2v" there.
WAN_SHIPPED_CONFIGS = {("t2v", 1536): "Wan2.1-T2V-1.3B", ("vace", 1536): "Wan2.1-VACE-1.3B"}
# original config.json key -> diffusers transformer config key (dim is checked as heads x head_dim).
WAN_ORIGINAL_CONFIG_KEYS = {
    "ffn_dim": "ffn_dim",
    "freq_dim": "freq_dim",
    "in_dim": "in_channels",
    "out_dim": "out_channels",
    "num_heads": "num_attention_heads",
    "num_layers": "num_layers",
}

# Original Wan umT5 encoder key -> transformers UMT5EncoderModel key ({i} = block index).
UMT5_ORIGINAL_TO_HF: tuple[tuple[str, str], ...] = (
    ("token_embedding.weight", "shared.weight"),
    ("blocks.{i}.norm1.weight", "encoder.block.{i}.layer.0.layer_norm.weight"),
    ("blocks.{i}.attn.q.weight", "encoder.block.{i}.layer.0.SelfAttention.q.weight"),
    ("blocks.{i}.attn.k.weight", "encoder.block.{i}.layer.0.SelfAttention.k.weight"),
    ("blocks.{i}.attn.v.weight", "encoder.block.{i}.layer.0.SelfAttention.v.weight"),
    ("blocks.{i}.attn.o.weight", "encoder.block.{i}.layer.0.SelfAttention.o.weight"),
    (
        "blocks.{i}.pos_embedding.embedding.weight",
        "encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight",
    ),
    ("blocks.{i}.norm2.weight", "encoder.block.{i}.layer.1.layer_norm.weight"),
    ("blocks.{i}.ffn.gate.0.weight", "encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight"),
    ("blocks.{i}.ffn.fc1.weight", "encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight"),
    ("blocks.{i}.ffn.fc2.weight", "encoder.block.{i}.layer.1.DenseReluDense.wo.weight"),
    ("norm.weight", "encoder.final_layer_norm.weight"),
)
# Tied to shared.weight in UMT5EncoderModel; absent from the original file.
UMT5_TIED_KEYS = ("encoder.embed_tokens.weight",)


def assets_dir(name: str) -> Path:
    """Folder of a shipped config set, e.g. ``assets_dir("Wan2.1-T2V-1.3B")``."""
    folder = Path(str(resources.files("vega3d") / "assets" / name))
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no shipped config set named {name!r}")
    return folder


def require(path: Path, what: str) -> Path:
    """Return ``path`` if it exists, else fail naming it and what it should hold."""
    if not path.exists():
        raise CheckpointError(f"{path}: missing; expected {what}")
    return path


def read_json_file(path: Path, what: str) -> dict[str, Any]:
    """Parse a JSON config file, failing with its path."""
    require(path, what)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: not valid JSON ({error}); expected {what}") from None


def weights_fingerprint(paths: Iterable[Path]) -> str:
    """16-hex hash of every weight file under ``paths``: relative name, size and first MiB of content."""
    digest = hashlib.sha256()
    for root in sorted(Path(p) for p in paths):
        files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
        for file in files:
            if file.suffix not in WEIGHT_SUFFIXES and file.name not in ("config.json", "tokenizer.json"):
                continue
            name = file.name if file == root else str(file.relative_to(root.parent))
            digest.update(f"{name}|{file.stat().st_size}|".encode())
            with open(file, "rb") as handle:
                digest.update(handle.read(FINGERPRINT_HEAD_BYTES))
    return digest.hexdigest()[:16]


def model_dtype(device: torch.device) -> torch.dtype:
    """Weights in bf16 on CUDA, fp32 elsewhere."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def check_loaded(model: torch.nn.Module, source: Path, config_dir: Path | None = None) -> torch.nn.Module:
    """Fail when a loader left parameters uninitialised (keys missing from ``source``)."""
    missing = [name for name, p in model.named_parameters() if p.device.type == "meta"]
    if missing:
        hint = f" for the config in {config_dir}" if config_dir else ""
        raise CheckpointError(
            f"{source}: {len(missing)} weights missing{hint}, e.g. {missing[:5]}; the file does not hold the "
            "model the config describes"
        )
    return model.eval().requires_grad_(False)


def template_regex(template: str) -> re.Pattern[str]:
    """``blocks.{i}.x`` -> a regex capturing the index."""
    return re.compile("^" + re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + "$")


def rename_keys(
    state_dict: dict[str, torch.Tensor], table: Iterable[tuple[str, str]], source: Path, reverse: bool = False
) -> dict[str, torch.Tensor]:
    """Rename every key by a template table (``{i}`` = index); an unknown key fails naming ``source``."""
    pairs = [(b, a) if reverse else (a, b) for a, b in table]
    compiled = [(template_regex(src), dst) for src, dst in pairs]
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        for pattern, target in compiled:
            match = pattern.match(key)
            if match:
                renamed[target.replace("{i}", match.groupdict().get("i") or "")] = value
                break
        else:
            raise CheckpointError(f"{source}: unexpected key {key!r}; expected an original Wan umT5 encoder file")
    return renamed


def load_torch_file(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or .pth (weights_only; never arbitrary pickles)."""
    require(path, what)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the path
        raise CheckpointError(f"{path}: cannot be read as {what} ({error})") from error


def load_single_file(cls: type, path: Path, config_dir: Path, subfolder: str, what: str, device: torch.device):
    """``cls.from_single_file`` of an original-format file, after checking its converted keys.

    diffusers' own loader may leave missing weights randomly initialised, so the file's keys are converted
    with the same diffusers mapping function and compared with the model built from ``config_dir`` first.
    """
    from diffusers.loaders.single_file_model import SINGLE_FILE_LOADABLE_CLASSES

    state = load_torch_file(path, what)
    convert = SINGLE_FILE_LOADABLE_CLASSES[cls.__name__]["checkpoint_mapping_fn"]
    config = cls.load_config(str(config_dir), subfolder=subfolder)
    with torch.device("meta"):
        expected = set(cls.from_config(config).state_dict())
    converted = set(convert(checkpoint=dict(state), config=config))
    ignored = [re.compile(p) for p in cls._keys_to_ignore_on_load_unexpected or []]
    missing = sorted(expected - converted)
    extra = sorted(k for k in converted - expected if not any(p.search(k) for p in ignored))
    if missing or extra:
        raise CheckpointError(
            f"{path}: does not match {config_dir / subfolder / 'config.json'}: {len(missing)} weights missing "
            f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]}); expected {what}"
        )
    dtype = model_dtype(device)
    try:
        model = cls.from_single_file(
            state, config=str(config_dir), subfolder=subfolder, torch_dtype=None if dtype == torch.float32 else dtype
        )
    except (ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: does not match {config_dir / subfolder} ({error})") from error
    return check_loaded(model, path, config_dir).to(device)


# --- Wan -----------------------------------------------------------------------------------------------


def wan_layout(folder: Path) -> str:
    """'diffusers' or 'original' for a Wan checkpoint folder; fails naming what either layout needs."""
    if (folder / "transformer" / "config.json").exists():
        return "diffusers"
    if (folder / WAN_ORIGINAL_TRANSFORMER).exists():
        return "original"
    raise CheckpointError(
        f"{folder}: not a Wan2.1 checkpoint; expected either the diffusers layout (transformer/config.json, "
        f"vae/, text_encoder/, tokenizer/) or the original layout ({WAN_ORIGINAL_TRANSFORMER}, "
        f"{WAN_ORIGINAL_VAE}, {WAN_ORIGINAL_T5}, {WAN_ORIGINAL_TOKENIZER}/, config.json)"
    )


def wan_config_dir(folder: Path, variant: str, config_dir: str | Path | None) -> Path:
    """The diffusers config folder for a Wan checkpoint (its own folder in the diffusers layout).

    For the original layout: ``config_dir`` if given, else the shipped config matching the original
    ``config.json`` (VACE when it lists ``vace_layers``, whatever its ``model_type`` says); the original
    config must agree with it (dim, heads, layers, ffn, channels).
    """
    if wan_layout(folder) == "diffusers":
        return folder
    original = read_json_file(folder / "config.json", "the original Wan config (dim, num_layers, ...)")
    kind = "vace" if "vace_layers" in original else "t2v"
    if config_dir is None:
        key = (kind, int(original.get("dim", -1)))
        if key not in WAN_SHIPPED_CONFIGS:
            raise CheckpointError(
                f"{folder / 'config.json'}: no shipped diffusers config for a {key[0].upper()} model of dim={key[1]}; "
                f"pass generative.config_dir=<folder with transformer/ vae/ text_encoder/ config.json files>"
            )
        config_dir = assets_dir(WAN_SHIPPED_CONFIGS[key])
    config_dir = Path(config_dir)
    diffusers_cfg = read_json_file(config_dir / "transformer" / "config.json", "a WanTransformer3DModel config")
    expected = {"dim": diffusers_cfg["num_attention_heads"] * diffusers_cfg["attention_head_dim"]}
    expected.update({k: diffusers_cfg[v] for k, v in WAN_ORIGINAL_CONFIG_KEYS.items() if v in diffusers_cfg})
    wrong = {k: (original[k], v) for k, v in expected.items() if k in original and original[k] != v}
    if wrong:
        raise CheckpointError(
            f"{folder / 'config.json'} does not match {config_dir / 'transformer' / 'config.json'}: "
            + ", ".join(f"{k}={got} but the config folder expects {want}" for k, (got, want) in wrong.items())
        )
    if variant == "vace" and "vace_layers" not in diffusers_cfg:
        raise CheckpointError(f"{config_dir / 'transformer' / 'config.json'}: expected a VACE config (vace_layers)")
    return config_dir


def load_wan_transformer(
    folder: Path, variant: str, config_dir: str | Path | None, device: torch.device
) -> torch.nn.Module:
    """WanTransformer3DModel (variant 't2v') or WanVACETransformer3DModel ('vace') from either layout."""
    from diffusers import WanTransformer3DModel, WanVACETransformer3DModel

    cls = WanVACETransformer3DModel if variant == "vace" else WanTransformer3DModel
    dtype = model_dtype(device)
    if wan_layout(folder) == "diffusers":
        sub = folder / "transformer"
        require(sub / "config.json", f"the {cls.__name__} config")
        if not any(sub.glob("diffusion_pytorch_model*.safetensors")):
            raise CheckpointError(f"{sub}: missing diffusion_pytorch_model*.safetensors ({cls.__name__} weights)")
        model = cls.from_pretrained(str(folder), subfolder="transformer", torch_dtype=dtype)
        return check_loaded(model, sub).to(device)
    configs = wan_config_dir(folder, variant, config_dir)
    return load_single_file(cls, folder / WAN_ORIGINAL_TRANSFORMER, configs, "transformer",
                            "the original Wan DiT weights", device)


def load_wan_vae(folder: Path, variant: str, config_dir: str | Path | None, device: torch.device) -> torch.nn.Module:
    """AutoencoderKLWan from either layout."""
    from diffusers import AutoencoderKLWan

    dtype = model_dtype(device)
    if wan_layout(folder) == "diffusers":
        require(folder / "vae" / "config.json", "the AutoencoderKLWan config")
        model = AutoencoderKLWan.from_pretrained(str(folder), subfolder="vae", torch_dtype=dtype)
        return check_loaded(model, folder / "vae").to(device)
    configs = wan_config_dir(folder, variant, config_dir)
    return load_single_file(AutoencoderKLWan, folder / WAN_ORIGINAL_VAE, configs, "vae",
                            "the original Wan VAE weights", device)


def wan_text_paths(folder: Path) -> list[Path]:
    """The files that determine the umT5 empty-prompt embedding (for its cache key)."""
    if wan_layout(folder) == "diffusers":
        return [folder / "text_encoder", folder / "tokenizer"]
    return [folder / WAN_ORIGINAL_T5, folder / WAN_ORIGINAL_TOKENIZER]


def load_wan_text_encoder(
    folder: Path, variant: str, config_dir: str | Path | None, device: torch.device
) -> tuple[Any, torch.nn.Module]:
    """(tokenizer, UMT5EncoderModel) from either layout."""
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    dtype = model_dtype(device)
    if wan_layout(folder) == "diffusers":
        require(folder / "text_encoder" / "config.json", "the UMT5EncoderModel config")
        tokenizer = AutoTokenizer.from_pretrained(str(require(folder / "tokenizer", "the umT5 tokenizer")))
        encoder = UMT5EncoderModel.from_pretrained(str(folder / "text_encoder"), dtype=dtype)
        return tokenizer, check_loaded(encoder, folder / "text_encoder").to(device)
    configs = wan_config_dir(folder, variant, config_dir)
    tokenizer_dir = require(folder / WAN_ORIGINAL_TOKENIZER, "the google/umt5-xxl tokenizer folder")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config_path = require(configs / "text_encoder" / "config.json", "the UMT5EncoderModel config")
    path = folder / WAN_ORIGINAL_T5
    state = rename_keys(load_torch_file(path, "the original Wan umT5 encoder weights"), UMT5_ORIGINAL_TO_HF, path)
    with torch.device("meta"):
        encoder = UMT5EncoderModel(UMT5Config.from_json_file(str(config_path)))
    expected = set(encoder.state_dict()) - set(UMT5_TIED_KEYS)
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise CheckpointError(f"{path}: does not match {config_path}: missing {missing[:5]}, unexpected {extra[:5]}")
    try:
        encoder.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: does not match {config_path} ({error})") from error
    encoder.encoder.embed_tokens = encoder.shared
    return tokenizer, check_loaded(encoder, path, configs).to(device)


# --- generic diffusers / transformers folders ---------------------------------------------------------


def load_diffusers_component(cls: type, folder: Path, subfolder: str, device: torch.device) -> torch.nn.Module:
    """A diffusers model from ``folder/subfolder`` (config.json + weights); on meta, built from the config only."""
    sub = folder / subfolder
    require(sub / "config.json", f"the {cls.__name__} config")
    if device.type == "meta":
        with torch.device("meta"):
            model = cls.from_config(cls.load_config(str(folder), subfolder=subfolder))
        return model.to("meta").eval()  # legacy torch.Tensor([...]) parameters ignore the default device
    if not any(sub.glob("diffusion_pytorch_model*.safetensors")) and not any(sub.glob("diffusion_pytorch_model*.bin")):
        raise CheckpointError(f"{sub}: missing diffusion_pytorch_model.safetensors ({cls.__name__} weights)")
    dtype = model_dtype(device)
    model = cls.from_pretrained(str(folder), subfolder=subfolder, torch_dtype=dtype)
    return check_loaded(model, sub).to(device)


def load_transformers_model(cls: type, folder: Path, device: torch.device) -> torch.nn.Module:
    """A transformers model from a folder (config.json + weights); on meta, built from the config only."""
    require(folder / "config.json", f"the {cls.__name__} config")
    if device.type == "meta":
        with torch.device("meta"):
            model = cls(cls.config_class.from_json_file(str(folder / "config.json")))
        return model.to("meta").eval()
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise CheckpointError(f"{folder}: missing model.safetensors ({cls.__name__} weights)")
    model = cls.from_pretrained(str(folder), dtype=model_dtype(device))
    return check_loaded(model, folder).to(device)


def load_tokenizer(folder: Path) -> Any:
    """A tokenizer folder through AutoTokenizer (offline)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(require(folder, "a tokenizer folder")))
