"""DeepSpeed on CPU through real processes: ZeRO-2/3 equivalence (toy model, fast), SIGKILL resume (toy and tiny).

Each run is ``tests/train/worker.py`` under ``python`` (1 process) or ``torchrun --standalone`` (2 processes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train.helpers import run_worker


@pytest.mark.parametrize("stage", [2, 3])
def test_two_processes_match_one_process_same_global_batch(tmp_path: Path, stage: int) -> None:
    common = [f"train.zero_stage={stage}", "train.max_steps=6", "train.per_device_batch_size=2"]
    one = run_worker(tmp_path, "one", 1, common + ["train.gradient_accumulation_steps=2"])
    two = run_worker(tmp_path, "two", 2, common + ["train.gradient_accumulation_steps=1"])
    curve_one = [r["loss"] for r in one["history"]]
    curve_two = [r["loss"] for r in two["history"]]
    assert len(curve_one) == len(curve_two) == 6
    assert [r["group"] for r in one["history"]] == [r["group"] for r in two["history"]]
    assert curve_two == pytest.approx(curve_one, rel=1e-5, abs=1e-6)
    assert curve_one[-1] != curve_one[0]  # the model did change
    for a, b in zip(one["history"], two["history"], strict=True):
        assert b["task_losses"] == pytest.approx(a["task_losses"], rel=1e-5, abs=1e-6)
        assert b["lr"] == pytest.approx(a["lr"])
        assert a["grad_norm"] > 0 and b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)
    w1 = load_file(str(tmp_path / "one" / "model" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "model" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    for key in w1:
        torch.testing.assert_close(w2[key], w1[key], rtol=1e-5, atol=1e-6)


def test_grad_norm_without_zero_is_the_one_zero2_reports(tmp_path: Path) -> None:
    """Stage 0 (our norm of the gradients) and ZeRO-2 (DeepSpeed's): the same first step, the same norm."""
    common = ["train.max_steps=2", "train.per_device_batch_size=2"]
    plain = run_worker(tmp_path, "plain", 1, common + ["train.zero_stage=0"])
    zero2 = run_worker(tmp_path, "zero2", 1, common + ["train.zero_stage=2"])
    first_plain, first_zero2 = plain["history"][0]["grad_norm"], zero2["history"][0]["grad_norm"]
    assert first_plain > 0
    assert first_plain == pytest.approx(first_zero2, rel=1e-4)


@pytest.mark.parametrize("model", ["toy", "tiny"])
def test_sigkill_during_checkpoint_then_resume_gives_same_weights(
    tmp_path: Path, model: str, request: pytest.FixtureRequest
) -> None:
    """SIGKILL while checkpoint 4 is being written; the rerun resumes from checkpoint 2 and ends with exactly
    the weights of an uninterrupted run (toy model, and the tiny VEGA-3D model with online Wan features)."""
    common = ["train.zero_stage=2", "train.max_steps=6", "train.save_steps=2", "train.save_total_limit=2"]
    env = {"WORKER_MODEL": model}
    if model == "tiny":
        common.append(f"data.root={request.getfixturevalue('train_root')}")
    full = run_worker(tmp_path, "full", 1, common, env=env)
    assert full["resumed_from_step"] == 0

    killed = run_worker(tmp_path, "killed", 1, common, env={**env, "VEGA3D_TEST_KILL_AT_SAVE": "4"},
                        check=False)
    assert killed is None  # SIGKILLed before finishing
    checkpoints = tmp_path / "killed" / "checkpoints"
    names = sorted(p.name for p in checkpoints.iterdir() if p.is_dir())
    assert names == [".tmp-step-00000004", "step-00000002"]  # the interrupted write is left partial
    assert not (checkpoints / ".tmp-step-00000004" / "complete.json").exists()

    resumed = run_worker(tmp_path, "killed", 1, common, env=env)
    assert resumed["resumed_from_step"] == 2  # the partial step-4 folder was never chosen
    assert [r["step"] for r in resumed["history"]] == [3, 4, 5, 6]
    assert [r["loss"] for r in resumed["history"]] == [r["loss"] for r in full["history"][2:]]
    # train_history.json keeps the killed run's steps up to the checkpoint it resumed from
    on_disk = json.loads((tmp_path / "killed" / "train_history.json").read_text())
    assert [r["step"] for r in on_disk] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in on_disk] == [r["loss"] for r in full["history"]]
    again = run_worker(tmp_path, "killed", 1, common, env=env)  # a rerun resumes at the end: nothing trains
    assert again["resumed_from_step"] == 6 and again["history"] == []
    assert json.loads((tmp_path / "killed" / "train_history.json").read_text()) == on_disk
    final = sorted(p.name for p in checkpoints.iterdir() if p.is_dir())
    assert final == ["step-00000004", "step-00000006"]  # keep last 2, partial folder cleaned
    w_full = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    w_resumed = load_file(str(tmp_path / "killed" / "model" / "model.safetensors"))
    for key in w_full:
        assert torch.equal(w_full[key], w_resumed[key]), key
