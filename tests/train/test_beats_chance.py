"""Learning, not just running: the tiny preset trained on the synthetic train scenes beats chance on val ScanQA
and val ScanRefer.

ScanQA (default synthetic size: 8 train / 3 val scenes; ``train.epochs=10``, all tasks): the model learns the answer
priors of the question types (count -> "one", colour -> a colour, "which object" -> a label), so it is held to the
majority-answer baseline as well as to uniform chance.

ScanRefer (16 train / 6 val scenes, grounding only, batch 4, 2,000 steps): held to uniform chance over the predicted
boxes and to the best description-blind predictor (one proposal per scene, chosen with hindsight). Beating the
second needs the description: the model matches the colour word to the object's pixels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.prepared import prepare
from tests.train.test_train_tiny import ROOT, history, vega3d_train

pytestmark = pytest.mark.slow

# Measured on this tree: 6 epochs reach 3 of 26 (11.5, below the majority answer's 4 of 26) since the grounding
# changes of issues 14/19 altered the joint trajectory; 10 epochs reach 5 of 26 (19.2).
EPOCHS = 10
GROUNDING_RUN = ["data.tasks=[scanrefer]", "train.per_device_batch_size=4", "train.max_steps=2000"]
SINGLE_THREAD = {"OMP_NUM_THREADS": "1"}  # two intra-op threads on a shared 2-core box run ~4x slower


@pytest.fixture(scope="module")
def default_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default-size synthetic data root with the tiny checkpoints, prepared (``vega3d data prep``)."""
    from vega3d.testing.demo import prepare_demo_data

    root = tmp_path_factory.mktemp("beats_chance") / "data"
    prepare_demo_data(root, "tiny")
    prepare(root)
    return root


@pytest.fixture(scope="module")
def grounding_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 train / 6 val synthetic scenes (95 val ScanRefer descriptions), prepared."""
    from vega3d.config import load_config
    from vega3d.testing.demo import prepare_demo_data

    root = tmp_path_factory.mktemp("beats_chance_grounding") / "data"
    synthetic = load_config("tiny").data.synthetic.model_copy(update={"num_train": 16, "num_val": 6})
    prepare_demo_data(root, "tiny", synthetic)
    prepare(root)
    return root


def evaluate(root: Path, task: str, model: str, output: Path) -> dict[str, float]:
    """``vega3d eval <task>`` of a trained model on the val split; returns metrics.json."""
    command = [sys.executable, "-m", "vega3d.cli", "eval", task, "--preset", "tiny", "--set", f"data.root={root}",
               "--checkpoint", model, "--output-uri", str(output), "--no-meteor"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env={**os.environ, **SINGLE_THREAD})
    assert proc.returncode == 0, proc.stderr[-5000:]
    return json.loads((output / task / "metrics.json").read_text())


def test_tiny_preset_beats_chance_on_val_scanqa(default_root: Path, tmp_path: Path) -> None:
    from vega3d.evaluation.tasks import chance_level, load_records

    output = str(tmp_path / "train")
    proc = vega3d_train(default_root, output, [f"train.epochs={EPOCHS}"], env=SINGLE_THREAD)
    model = json.loads(proc.stdout.strip().splitlines()[-1])["model_uri"]

    steps = history(output)
    qa_losses = [r["task_losses"]["scanqa"] for r in steps if "scanqa" in r["task_losses"]]
    tenth = len(qa_losses) // 10
    assert sum(qa_losses[-tenth:]) / tenth < 0.5 * sum(qa_losses[:tenth]) / tenth

    metrics = evaluate(default_root, "scanqa", model, tmp_path / "eval")
    chance = chance_level("scanqa", load_records(str(default_root), "scanqa", "val"))
    assert metrics["num_records"] == 26.0
    # A uniform guesser reaches chance + 10 points (4 of 26 right where 1.5 are expected) with p ~ 0.06;
    # the model must also be at least as good as always giving the split's most common answer.
    assert metrics["em_normalized"] >= chance["em_normalized"] + 9.0, (metrics, chance)
    assert metrics["em_normalized"] >= chance["em_normalized_majority"], (metrics, chance)


def test_tiny_preset_grounds_descriptions_on_val_scanrefer(grounding_root: Path, tmp_path: Path) -> None:
    from vega3d import storage
    from vega3d.data.layout import DataLayout
    from vega3d.evaluation.tasks import chance_level, load_records

    output = str(tmp_path / "train")
    proc = vega3d_train(grounding_root, output, GROUNDING_RUN, env=SINGLE_THREAD)
    model = json.loads(proc.stdout.strip().splitlines()[-1])["model_uri"]

    losses = [r["task_losses"]["scanrefer"] for r in history(output)]
    tenth = len(losses) // 10
    assert sum(losses[-tenth:]) / tenth < 0.7 * sum(losses[:tenth]) / tenth  # from log(K + 1) ~ 2.2

    metrics = evaluate(grounding_root, "scanrefer", model, tmp_path / "eval")
    proposals = storage.read_json(str(DataLayout(grounding_root).pred_box_path("val")))
    chance = chance_level("scanrefer", load_records(str(grounding_root), "scanrefer", "val"), proposals)
    assert metrics["num_records"] == 95.0
    assert metrics["acc_iou25"] >= chance["acc_iou25"] + 12.0, (metrics, chance)
    # no predictor that ignores the description can pass the blind level
    assert metrics["acc_iou25"] >= chance["acc_iou25_blind"] + 10.0, (metrics, chance)
