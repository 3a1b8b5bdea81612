"""Tiny checkpoints written once per session in the real on-disk formats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vega3d.config import GenerativeConfig
from vega3d.testing.tiny_generative import write_tiny_wan


@pytest.fixture(scope="session", autouse=True)
def _text_embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Cache empty-prompt embeddings in a session folder, not the user's home."""
    os.environ["VEGA3D_CACHE"] = str(tmp_path_factory.mktemp("vega3d-cache"))


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(diffusers folder, original folder) of one tiny 4-block Wan2.1 T2V model."""
    root = tmp_path_factory.mktemp("models")
    return write_tiny_wan(root / "tiny-wan-t2v", num_layers=4, seed=1)


@pytest.fixture(scope="session")
def tiny_vace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(diffusers folder, original folder) of one tiny 4-block Wan2.1 VACE model (hints at blocks 0, 2)."""
    root = tmp_path_factory.mktemp("models")
    return write_tiny_wan(root / "tiny-wan-vace", variant="vace", num_layers=4, seed=2)


def wan_config(checkpoint: Path, **changes) -> GenerativeConfig:
    """Tiny-setting generative config (block 1, 112x112) on a checkpoint folder."""
    settings = {"checkpoint": str(checkpoint), "block": 1, "resolution": (112, 112), **changes}
    return GenerativeConfig(**settings)


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny checkpoints of the non-Wan families, by encoder id."""
    from vega3d.testing import tiny_generative as tiny

    root = tmp_path_factory.mktemp("family")
    sd = tiny.write_tiny_sd(root / "sd21")
    return {"sd21": sd, "vae": sd, "svd": tiny.write_tiny_svd(root / "svd"),
            "dinov3": tiny.write_tiny_dinov3(root / "dinov3"), "vjepa2": tiny.write_tiny_vjepa2(root / "vjepa2")}
