"""Launcher environment and command, RNG capture/restore, choice and pruning of complete checkpoints."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vega3d.train import launch
from vega3d.train.checkpoints import (
    COMPLETE_MARKER,
    CheckpointManager,
    capture_rng,
    latest_complete,
    restore_rng,
    step_dir_name,
)

DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCH_EXTENSIONS_DIR")


def test_single_process_gets_a_one_rank_world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in DIST_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert not launch.inside_torchrun()
    launch.ensure_process_env()
    import os

    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("0", "1", "0")
    assert os.environ["MASTER_ADDR"] == "127.0.0.1" and 1 <= int(os.environ["MASTER_PORT"]) < 65536
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(tmp_path / ".cache" / "torch_extensions")


def test_cluster_torchrun_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name, value in {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.2",
                        "MASTER_PORT": "29400"}.items():
        monkeypatch.setenv(name, value)
    assert launch.inside_torchrun()
    launch.ensure_process_env()
    assert [os.environ[n] for n in DIST_VARS[:5]] == ["5", "8", "1", "10.0.0.2", "29400"]


def test_torchrun_command_line() -> None:
    command = launch.torchrun_command(2, "/tmp/c.yaml", "/tmp/r.json", "abc123")
    assert command[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    assert command[5:] == ["-m", "vega3d.train.launch", "--config", "/tmp/c.yaml", "--result", "/tmp/r.json",
                           "--parent-run-id", "abc123"]
    assert "--parent-run-id" not in launch.torchrun_command(2, "c", "r", None)


def test_rng_states_round_trip_through_json() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = json.loads(json.dumps(capture_rng()))
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_rng(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def _fake_checkpoint(root: Path, step: int, complete: bool) -> None:
    folder = root / "checkpoints" / step_dir_name(step)
    folder.mkdir(parents=True)
    (folder / "mp_rank_00_model_states.pt").write_bytes(b"x")
    if complete:
        (folder / COMPLETE_MARKER).write_text(json.dumps({"step": step}))


def test_latest_complete_skips_partial_writes_and_prune_keeps_last_k(tmp_path: Path) -> None:
    for step, complete in [(2, True), (4, True), (6, True), (8, False)]:
        _fake_checkpoint(tmp_path, step, complete)
    (tmp_path / "checkpoints" / ".tmp-step-00000010").mkdir()
    found = latest_complete(str(tmp_path / "checkpoints"))
    assert found == (6, str(tmp_path / "checkpoints" / "step-00000006"))
    CheckpointManager(str(tmp_path), keep_last=2).prune()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000004", "step-00000006"]
    assert latest_complete(str(tmp_path / "nothing")) is None
