"""model.max_length is enforced up front (issue 16: a 100k-character description ran as a 25k-token prompt)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.evaluation.conftest import BASELINE
from vega3d.config import load_config
from vega3d.evaluation import predictors, tasks
from vega3d.model.length import PromptTooLongError, over_length
from vega3d.model.prompts import encode_record

LONG = "a brown wooden chair next to the table " * 2600  # ~100k characters


def test_evaluation_refuses_an_over_long_record_before_predicting(loaded):
    cfg, model, tokenizer = loaded
    predict = predictors.ModelPredictor(model, tokenizer, cfg, "scanqa")
    records = tasks.load_records(cfg.data.root, "scanqa", "val")
    predict.check_lengths(records)  # the real records fit
    bad = json.loads(json.dumps(records[3]))
    bad["conversations"][0]["value"] += LONG
    with pytest.raises(PromptTooLongError) as error:
        predict.check_lengths([*records, bad])
    visual = model.tokens_for_frames(cfg.data.frames_upbound)
    expected = len(encode_record(tokenizer, bad, "generate", predict.spatial).input_ids) - 1 + visual
    assert error.value.over == [(bad["id"], expected)]
    assert expected > cfg.model.max_length
    assert f"model.max_length={cfg.model.max_length}" in str(error.value) and bad["id"] in str(error.value)


def test_the_budget_counts_visual_tokens_exactly(loaded):
    cfg, model, tokenizer = loaded
    record = tasks.load_records(cfg.data.root, "scanqa", "val")[0]
    tokens = len(encode_record(tokenizer, record, "generate", False).input_ids)
    visual = 100
    assert over_length(tokenizer, [record], "generate", False, tokens - 1 + visual, visual) == []
    assert over_length(tokenizer, [record], "generate", False, tokens - 2 + visual, visual) == [
        (record["id"], tokens - 1 + visual)]


def test_training_refuses_an_over_long_record_before_it_starts(prepared_root, tmp_path):
    from vega3d.train.factory import build_training

    root = tmp_path / "data"
    shutil.copytree(prepared_root, root)
    path = root / "processed" / "scanqa_train_llava_style.json"
    records = json.loads(path.read_text())
    records[5]["conversations"][1]["value"] = LONG  # a runaway answer
    path.write_text(json.dumps(records))
    cfg = load_config("tiny", [*BASELINE, f"data.root={root}"]).with_paths_under_root()
    with pytest.raises(PromptTooLongError, match=records[5]["id"]):
        build_training(cfg)
