"""A pipeline run's configuration: pipeline parameters -> one resolved, content-addressed config.

Pipeline parameters are flat (what a user types in the Kubeflow UI); ``resolve_run_config`` turns them into
the full ``Vega3DConfig`` with every output URI placed under the storage root by a digest of the config, so
the same settings always write to the same place (cache hits and reruns find their outputs) and different
settings never collide.
"""

from __future__ import annotations

import hashlib
import json

import yaml

from vega3d import storage
from vega3d.config import Vega3DConfig, build_config, load_config

# Sentinels meaning "keep the preset's value" for the flat pipeline parameters.
UNSET_STR = ""
UNSET_NUM = -1


def pipeline_overrides(
    backbone: str = UNSET_STR,
    fusion: str = UNSET_STR,
    sampling: str = UNSET_STR,
    frames: int = UNSET_NUM,
    timestep: int = UNSET_NUM,
    block: int = UNSET_NUM,
    lr: float = UNSET_NUM,
    vision_lr: float = UNSET_NUM,
    epochs: float = UNSET_NUM,
    max_steps: int = UNSET_NUM,
    nproc: int = UNSET_NUM,
    extra: list[str] | None = None,
) -> list[str]:
    """Dotted overrides for the parameters that were set (sentinels are skipped), then ``extra``."""
    pairs = [
        ("generative.backbone", backbone, UNSET_STR),
        ("model.fusion", fusion, UNSET_STR),
        ("data.sampling", sampling, UNSET_STR),
        ("data.frames_upbound", frames, UNSET_NUM),
        ("generative.timestep", timestep, UNSET_NUM),
        ("generative.block", block, UNSET_NUM),
        ("train.lr", lr, UNSET_NUM),
        ("train.vision_lr", vision_lr, UNSET_NUM),
        ("train.epochs", epochs, UNSET_NUM),
        ("train.max_steps", max_steps, UNSET_NUM),
        ("train.nproc", nproc, UNSET_NUM),
    ]
    overrides = [f"{key}={value}" for key, value, unset in pairs if value != unset]
    return overrides + list(extra or [])


def config_digest(cfg: Vega3DConfig) -> str:
    """Short stable hash of everything that determines a run's results (not where they are tracked)."""
    tree = cfg.model_dump(mode="json")
    tree.pop("tracking", None)
    tree.get("train", {}).pop("output_uri", None)
    tree.get("eval", {}).pop("output_uri", None)
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:12]


def resolve_run_config(
    preset: str,
    overrides: list[str],
    storage_root: str,
    data_uri: str,
    tracking_uri: str | None = None,
    experiment: str = "vega3d",
) -> Vega3DConfig:
    """Preset + overrides, with the data root, output URIs under ``storage_root`` and tracking set."""
    cfg = load_config(preset, overrides)
    tree = cfg.model_dump(mode="json")
    tree["data"]["root"] = data_uri
    tree["tracking"].update({"uri": tracking_uri or None, "experiment": experiment})
    digest = config_digest(build_config(tree))
    tree["train"]["output_uri"] = storage.join(storage_root, "runs", digest, "train")
    tree["eval"]["output_uri"] = storage.join(storage_root, "runs", digest, "eval")
    return build_config(tree)


def config_to_yaml(cfg: Vega3DConfig) -> str:
    """The resolved config as YAML text (what pipeline steps pass to each other)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=True)


def config_from_yaml(text: str) -> Vega3DConfig:
    """Parse the YAML written by ``config_to_yaml``, validating every field."""
    return build_config(yaml.safe_load(text))
