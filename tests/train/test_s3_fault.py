"""Fault injection (issue 16): the S3 server dies while a checkpoint is being uploaded and comes back; the rerun
resumes from the last complete checkpoint and ends with exactly the weights of an undisturbed run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load

from tests.train.helpers import run_worker
from vega3d import storage
from vega3d.testing.services import start_seaweedfs

COMMON = ["train.zero_stage=2", "train.max_steps=6", "train.save_steps=2", "train.save_total_limit=3"]


def _weights(uri: str) -> dict[str, torch.Tensor]:
    return load(storage.read_bytes(storage.join(uri, "model", "model.safetensors")))


@pytest.mark.integration
def test_s3_killed_during_checkpoint_upload_then_restarted(tmp_path: Path, monkeypatch) -> None:
    workdir = tmp_path / "s3"
    server = start_seaweedfs(workdir, bucket="fault")
    try:
        for name, value in server.env().items():
            monkeypatch.setenv(name, value)
        full_uri, hit_uri = server.uri("full"), server.uri("hit")
        full = run_worker(tmp_path, "full", 1, [*COMMON, f"train.output_uri={full_uri}"], env=server.env())
        assert full["resumed_from_step"] == 0

        env = {**server.env(), "VEGA3D_TEST_KILL_S3_AT_SAVE": "4", "VEGA3D_TEST_S3_PGID": str(server.pid)}
        died = run_worker(tmp_path, "hit", 1, [*COMMON, f"train.output_uri={hit_uri}"], env=env, check=False)
        assert died is None and not server.alive()  # training stopped when the store went away

        server = start_seaweedfs(workdir, bucket="fault", access_key=server.access_key, secret_key=server.secret_key)
        for name, value in server.env().items():  # the same data, back on a new port
            monkeypatch.setenv(name, value)
        hit_uri = server.uri("hit")
        checkpoints = storage.join(hit_uri, "checkpoints")
        names = sorted(storage.listdir(checkpoints))
        assert "step-00000002" in names
        assert not storage.exists(storage.join(checkpoints, "step-00000004", "complete.json"))

        resumed = run_worker(tmp_path, "hit", 1, [*COMMON, f"train.output_uri={hit_uri}"], env=server.env())
        assert resumed["resumed_from_step"] == 2  # the last complete checkpoint, not the interrupted one
        assert [r["step"] for r in resumed["history"]] == [3, 4, 5, 6]
        assert [r["loss"] for r in resumed["history"]] == [r["loss"] for r in full["history"][2:]]
        w_full, w_hit = _weights(server.uri("full")), _weights(hit_uri)
        assert w_full.keys() == w_hit.keys()
        for key in w_full:
            assert torch.equal(w_full[key], w_hit[key]), key
    finally:
        server.stop()
