"""Fixtures of the viewer tests: a prepared synthetic root and an evaluation output with known results."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.helpers import make_small_root
from tests.data.prepared import add_benchmarks, prepare
from vega3d.evaluation.predictions import write_jsonl
from vega3d.evaluation.tasks import TASKS, load_records, oracle_predictions


def miss(task: str, prediction: dict) -> dict:
    """A wrong prediction of the same shape: boxes moved 3 m along x, other answers and captions."""
    moved = {"box": lambda p: {**p, "box": [p["box"][0] + 3.0, *p["box"][1:]]},
             "boxes": lambda p: {**p, "boxes": [[b[0] + 3.0, *b[1:]] for b in p["boxes"]] or [[0, 0, 0, 1, 1, 1]]}}
    if task == "scanrefer":
        return moved["box"](prediction)
    if task == "multi3drefer":
        return moved["boxes"](prediction)
    if task == "scan2cap":
        return {**moved["box"](prediction), "caption": "zzz"}
    return {**prediction, "answer": "qqqq"}


@pytest.fixture(scope="session")
def viewer_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared small synthetic data root (read-only)."""
    root = tmp_path_factory.mktemp("viewer") / "data"
    make_small_root(root)
    add_benchmarks(root)
    prepare(root)
    return root


@pytest.fixture(scope="session")
def eval_output(viewer_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], dict]:
    """``<eval>/<task>/predictions.jsonl``: the oracle on even records, a miss on odd ones.

    Returns (eval folder, records per task, incorrect records per task).
    """
    out = tmp_path_factory.mktemp("viewer_eval")
    counts, wrong = {}, {}
    for task in TASKS:
        records = load_records(str(viewer_root), task)
        preds = oracle_predictions(task, records)
        preds = [p if i % 2 == 0 else miss(task, p) for i, p in enumerate(preds)]
        write_jsonl(str(out / task / "predictions.jsonl"), preds)
        counts[task] = len(records)
        wrong[task] = len(records) // 2
    return out, counts, wrong
