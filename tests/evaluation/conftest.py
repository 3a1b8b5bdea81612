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


@pytest.fixture(scope="module")
def loaded(prepared_root: Path):
    """(config, tiny model, tokenizer) of the baseline (no generative branch) on ``prepared_root``, on CPU."""
    import torch

    from vega3d.config import load_config
    from vega3d.evaluation import predictors

    cfg = load_config("tiny", [*BASELINE, f"data.root={prepared_root}"])
    torch.manual_seed(0)
    model, tokenizer = predictors.load_eval_model(cfg, 0, torch.device("cpu"))
    return cfg, model, tokenizer
