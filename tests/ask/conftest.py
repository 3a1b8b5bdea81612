"""Fixtures of the ask/serve tests: the evaluation's prepared synthetic root and tiny model, loaded once."""

from __future__ import annotations

import pytest
import torch

from tests.evaluation.conftest import BASELINE, prepared_root  # noqa: F401  (the session fixture, reused)


@pytest.fixture(scope="module")
def loaded(prepared_root):  # noqa: F811
    """(cfg, model, tokenizer) of the tiny baseline model on the prepared root."""
    from vega3d.config import load_config
    from vega3d.evaluation.predictors import load_eval_model

    cfg = load_config("tiny", [*BASELINE, f"data.root={prepared_root}"])
    torch.manual_seed(0)
    model, tokenizer = load_eval_model(cfg, 0, torch.device("cpu"))
    return cfg, model, tokenizer


@pytest.fixture(scope="module")
def engine(loaded, tmp_path_factory):
    """An AskEngine sharing the evaluation predictor's model object."""
    from vega3d.ask.engine import AskEngine

    cfg, model, tokenizer = loaded
    return AskEngine(cfg, model, tokenizer, None, tmp_path_factory.mktemp("ask_stage"))


@pytest.fixture(scope="module")
def checkpoint(loaded, tmp_path_factory):
    """The tiny model saved in our own format (every weight on disk: a server or CLI and the test load the same
    model)."""
    from vega3d.model.loading import save_model

    path = tmp_path_factory.mktemp("saved") / "model"
    save_model(loaded[1], loaded[2], path)
    return path
