"""The resumable sharded runner: SIGKILL mid-run then rerun gives the same metrics as an uninterrupted run."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evaluation.helpers import dummy_predict_batch, make_split
from vega3d.evaluation import inference, tasks
from vega3d.evaluation.predictions import load_predictions

NO_JAVA = tasks.ScoreSettings(meteor=False)
ROOT = Path(__file__).resolve().parents[2]


def run_child(records_path, out, shard, num_shards, batch, kill_at):
    return subprocess.run(
        [sys.executable, "-m", "tests.evaluation.runner_child", str(records_path), str(out), str(shard),
         str(num_shards), str(batch), str(kill_at)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def metrics_of(records, out, num_shards):
    merged = inference.merge_shards(str(out), num_shards)
    pset = load_predictions("sqa3d", merged, [r["id"] for r in records])
    assert pset.problems == [] and pset.missing == []
    return tasks.score("sqa3d", records, pset, NO_JAVA).metrics


def test_shard_records_strided():
    records = [{"id": str(i)} for i in range(7)]
    assert [r["id"] for r in inference.shard_records(records, 1, 3)] == ["1", "4"]
    with pytest.raises(ValueError, match="shard_index"):
        inference.shard_records(records, 3, 3)


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    records, _ = make_split("sqa3d", 37, seed=4)
    records_path = tmp_path / "records.json"
    records_path.write_text(json.dumps(records))
    # shard 0 of 2 holds 19 records = batches of 4: 4,4,4,4,3; killed inside its 3rd batch
    killed = run_child(records_path, tmp_path / "resumed", 0, 2, 4, kill_at=3)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    shard0 = tmp_path / "resumed" / "shards" / inference.shard_name(0, 2)
    written = [json.loads(line)["id"] for line in shard0.read_text().splitlines()]
    assert written == [r["id"] for r in records[0::2][:8]]  # the two finished batches, nothing of the third
    for shard in (0, 1):
        assert run_child(records_path, tmp_path / "resumed", shard, 2, 4, kill_at=-1).returncode == 0
    assert len(shard0.read_text().splitlines()) == 19  # no record predicted twice
    for shard in (0, 1):
        inference.run_inference(records, dummy_predict_batch, str(tmp_path / "straight"), shard, 2, 4, progress=False)
    resumed = metrics_of(records, tmp_path / "resumed", 2)
    straight = metrics_of(records, tmp_path / "straight", 2)
    assert resumed == straight
    assert resumed["num_records"] == 37


def test_torn_last_line_is_dropped_and_redone(tmp_path):
    records, _ = make_split("sqa3d", 6, seed=4)
    calls = []

    def predict(batch):
        calls.extend(r["id"] for r in batch)
        return dummy_predict_batch(batch)

    uri = inference.run_inference(records[:3], predict, str(tmp_path), batch_size=2, progress=False)
    with open(uri, "a") as handle:
        handle.write('{"id": "' + records[3]["id"] + '", "ans')  # crash in the middle of a write
    calls.clear()
    inference.run_inference(records, predict, str(tmp_path), batch_size=2, progress=False)
    assert calls == [r["id"] for r in records[3:]]
    rows = [json.loads(line) for line in Path(uri).read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in records]


def test_predictor_must_keep_ids_in_order(tmp_path):
    records, _ = make_split("sqa3d", 4, seed=4)
    with pytest.raises(ValueError, match="keep the order"):
        inference.run_inference(records, lambda b: dummy_predict_batch(b)[::-1], str(tmp_path), batch_size=2,
                                progress=False)


def test_merge_names_missing_shards(tmp_path):
    records, _ = make_split("sqa3d", 4, seed=4)
    inference.run_inference(records, dummy_predict_batch, str(tmp_path), 0, 2, progress=False)
    with pytest.raises(FileNotFoundError, match="shard-00001-of-00002"):
        inference.merge_shards(str(tmp_path), 2)


def test_remote_output_uri_round_trip():
    """Object-store URIs (fsspec memory:// here) stage locally, upload per sync, and resume from the upload."""
    records, _ = make_split("sqa3d", 9, seed=4)
    out = "memory://vega3d-eval-test/run1"
    inference.run_inference(records[:5], dummy_predict_batch, out, batch_size=2, sync_every=1, progress=False)
    calls = []

    def predict(batch):
        calls.extend(r["id"] for r in batch)
        return dummy_predict_batch(batch)

    inference.run_inference(records, predict, out, batch_size=2, progress=False)
    assert calls == [r["id"] for r in records[5:]]
    assert metrics_of(records, out, 1)["num_records"] == 9
