"""Where ``--checkpoint`` points: a local folder, an s3:// folder, or an MLflow registry model URI."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from vega3d import staging, storage

logger = logging.getLogger(__name__)

REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def registry_source(uri: str, tracking_uri: str | None = None) -> str:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` -> the registered version's source URI."""
    match = REGISTRY_URI.match(uri)
    if match is None:
        raise ValueError(f"--checkpoint {uri!r}: a registry model is models:/<name>@<alias> or models:/<name>/<version>")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    name = match["name"]
    version = (client.get_model_version_by_alias(name, match["alias"]) if match["alias"]
               else client.get_model_version(name, match["version"]))
    logger.info("%s -> version %s at %s", uri, version.version, version.source)
    return str(version.source)


def resolve_checkpoint(uri: str, tracking_uri: str | None = None) -> str:
    """A local folder holding the checkpoint: registry URIs are looked up, remote folders staged down."""
    if uri.startswith("models:/"):
        uri = registry_source(uri, tracking_uri)
    if storage.is_remote(uri):
        return str(staging.stage_down(uri))
    path = Path(uri).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json: --checkpoint must be a saved model or LLaVA-Video folder")
    return str(path.resolve())
