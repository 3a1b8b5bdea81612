"""Fixtures of the training tests: a prepared synthetic data root with the tiny VEGA-3D and Wan checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def train_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small synthetic scenes + raw benchmarks + processed records + a tiny LLaVA-Video checkpoint (tokenizer
    trained on the benchmark text) + a tiny Wan2.1-T2V checkpoint, at the tiny preset's relative paths; read-only."""
    from tests.data.helpers import make_small_root
    from tests.data.prepared import add_benchmarks, prepare
    from vega3d.config import load_config
    from vega3d.testing.demo import benchmark_corpus
    from vega3d.testing.tiny_generative import write_tiny_wan
    from vega3d.testing.tiny_llava import default_corpus, write_tiny_llava_video

    root = tmp_path_factory.mktemp("train_synthetic") / "data"
    make_small_root(root)
    add_benchmarks(root)
    prepare(root)
    cfg = load_config("tiny", [f"data.root={root}"]).with_paths_under_root()
    write_tiny_llava_video(cfg.model.checkpoint, cfg.model, corpus=default_corpus() + benchmark_corpus(root))
    write_tiny_wan(cfg.generative.checkpoint, "t2v")
    return root
