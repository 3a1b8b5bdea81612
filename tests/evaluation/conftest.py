"""Fixtures of the evaluation tests: a prepared synthetic data root with a tiny model inside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.helpers import make_small_root
from tests.data.prepared import add_benchmarks, prepare

BASELINE = ["generative.backbone=none", "eval.max_new_tokens=6"]


@pytest.fixture(scope="session")
def prepared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small synthetic scenes + raw benchmarks + `run_prep` outputs + a tiny random LLaVA-Video checkpoint
    at the tiny preset's model.checkpoint (relative to the root); read-only."""
    from vega3d.config import load_config
    from vega3d.testing.tiny_llava import write_tiny_llava_video

    root = tmp_path_factory.mktemp("eval_synthetic") / "data"
    make_small_root(root)
    add_benchmarks(root)
    prepare(root)
    cfg = load_config("tiny", BASELINE)
    write_tiny_llava_video(root / cfg.model.checkpoint, cfg.model)
    return root
