"""Resume reads DeepSpeed checkpoints with weights_only=True: a pickle planted in checkpoints/ never runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.train.helpers import run_worker
from vega3d.train.safe_load import UnsafeCheckpointError, safe_load


class _Planted:
    """What an attacker with write access to the bucket would save: code that runs on unpickling."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_resume_loads_our_checkpoints_and_refuses_a_planted_pickle(tmp_path: Path) -> None:
    common = ["train.zero_stage=2", "train.max_steps=2", "train.save_steps=2"]
    run_worker(tmp_path, "run", 1, common)
    step = tmp_path / "run" / "checkpoints" / "step-00000002"
    files = sorted(step.glob("*.pt"))
    assert len(files) == 2
    for path in files:  # DeepSpeed's own files load through the restricted unpickler
        state = safe_load(str(path), map_location="cpu")
        assert isinstance(state, dict) and state
    marker = tmp_path / "pwned"
    model_states = next(p for p in files if "model_states" in p.name)
    torch.save({"module": _Planted(marker)}, model_states)
    with pytest.raises(UnsafeCheckpointError, match="refused to load"):
        safe_load(str(model_states))
    assert not marker.exists()
    (tmp_path / "run.json").unlink()
    resumed = run_worker(tmp_path, "run", 1, [*common[:1], "train.max_steps=4", "train.save_steps=2"], check=False)
    assert resumed is None  # the resume stops with the error instead of running the planted code
    assert not marker.exists()
