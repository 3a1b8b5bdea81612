"""A pipeline run's configuration: pipeline parameters -> one resolved, content-addressed config.

Pipeline parameters are flat (what a user types in the Kubeflow UI; declared in ``vega3d.params``, which turns
them into dotted overrides); ``resolve_run_config`` turns preset + overrides into the full ``Vega3DConfig`` with every output URI placed under the storage root by a digest of the config, so
the same settings always write to the same place (cache hits and reruns find their outputs) and different
settings never collide.
"""

from __future__ import annotations

import hashlib
import json

import yaml

from vega3d import storage
from vega3d.config import Vega3DConfig, build_config, load_config


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
