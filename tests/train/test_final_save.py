"""A kill during the final save leaves no orphan for ever, and model/ is published with normal permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.train.helpers import run_worker
from vega3d.train.trainer import MODEL_STAGING_PREFIX


def test_kill_during_final_save_then_rerun_cleans_up_and_publishes_readable_model(tmp_path: Path) -> None:
    common = ["train.zero_stage=2", "train.max_steps=2", "train.save_steps=2"]
    killed = run_worker(tmp_path, "run", 1, common, env={"VEGA3D_TEST_KILL_AT_FINAL_SAVE": "1"}, check=False)
    assert killed is None
    out = tmp_path / "run"
    orphans = list(out.glob(f"{MODEL_STAGING_PREFIX}*"))
    assert len(orphans) == 1 and (orphans[0] / "model.safetensors").exists()  # what the kill left behind
    assert not (out / "model").exists()

    again = run_worker(tmp_path, "run", 1, common)  # resumes at step 2: only the final save runs
    assert again["resumed_from_step"] == 2 and again["history"] == []
    assert not list(out.glob(f"{MODEL_STAGING_PREFIX}*"))
    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((out / "model").stat().st_mode)
    assert mode == 0o777 & ~umask and mode & 0o055  # group/others can list and read it (was 0700)
    assert (out / "model" / "model.safetensors").stat().st_size > 0
