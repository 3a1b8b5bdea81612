"""vega3d.stages pieces that need no model: the extract decision, local configs, artifact files, finalize."""

import json
import uuid
from pathlib import Path

import pytest

from vega3d import stages, storage
from vega3d.config import load_config
from vega3d.runs import config_to_yaml, resolve_run_config
from vega3d.tracking import PIPELINE_RUN_ID_TAG, STAGE_TAG, Tracker


def _yaml(*overrides: str) -> str:
    return config_to_yaml(load_config("tiny", list(overrides)))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ((), False),  # tiny: wan_t2v online
        (("generative.mode=offline",), True),
        (("generative.backbone=sd21", "generative.mode=offline"), True),
        (("generative.backbone=none", "generative.mode=offline"), False),
        (("generative.backbone=none", "generative.mode=online"), False),
    ],
)
def test_needs_offline_features(overrides, expected):
    assert stages.needs_offline_features(_yaml(*overrides)) is expected


def test_local_config_points_data_and_relative_checkpoints_at_the_local_copy(tmp_path):
    cfg = resolve_run_config("tiny", [], "s3://bucket/root", "s3://bucket/root/data")
    local = stages._local_config(cfg, tmp_path / "staged")
    assert local.data.root == str(tmp_path / "staged")
    assert local.model.checkpoint == str(tmp_path / "staged" / "models" / "tiny-llava-video")
    assert local.generative.checkpoint == str(tmp_path / "staged" / "models" / "tiny-wan-t2v")
    # everything else is the run's config unchanged
    assert local.train == cfg.train and local.eval == cfg.eval and local.model.llm == cfg.model.llm
    assert cfg.data.root == "s3://bucket/root/data"  # the input is not modified


def test_local_config_keeps_absolute_checkpoints(tmp_path):
    cfg = resolve_run_config(
        "tiny", [f"model.checkpoint={tmp_path}/llava"], "s3://bucket/root", "s3://bucket/root/data"
    )
    local = stages._local_config(cfg, tmp_path / "staged")
    assert local.model.checkpoint == f"{tmp_path}/llava"
    assert local.generative.checkpoint == str(tmp_path / "staged" / "models" / "tiny-wan-t2v")


@pytest.mark.integration
def test_local_config_stages_a_checkpoint_uri_elsewhere(s3_prefix, tmp_path, monkeypatch):
    monkeypatch.setenv("VEGA3D_CACHE", str(tmp_path / "cache"))
    weights = storage.join(s3_prefix, "checkpoints", "llava")
    storage.write_bytes(storage.join(weights, "config.json"), b'{"model_type": "llava"}')
    storage.write_bytes(storage.join(weights, "sub", "model.safetensors"), b"\x00\x01\x02")
    cfg = resolve_run_config("tiny", [f"model.checkpoint={weights}"], s3_prefix, storage.join(s3_prefix, "data"))
    local = stages._local_config(cfg, tmp_path / "staged")
    staged = tmp_path / "cache" / "staged"
    assert local.model.checkpoint.startswith(str(staged))
    assert (Path(local.model.checkpoint) / "config.json").read_bytes() == b'{"model_type": "llava"}'
    assert (Path(local.model.checkpoint) / "sub" / "model.safetensors").read_bytes() == b"\x00\x01\x02"
    assert local.generative.checkpoint == str(tmp_path / "staged" / "models" / "tiny-wan-t2v")


def test_write_artifact_file(tmp_path):
    path = tmp_path / "outputs" / "model" / "artifact"
    stages.write_artifact_file(str(path), {"uri": "s3://b/runs/abc/train/model", "loss": 1.5})
    assert path.read_text() == '{\n  "loss": 1.5,\n  "uri": "s3://b/runs/abc/train/model"\n}'
    stages.write_artifact_file(str(path), {"uri": "s3://b/other"})  # a rerun overwrites
    assert json.loads(path.read_text()) == {"uri": "s3://b/other"}


@pytest.fixture
def pipeline_run(mlflow_server):
    """A parent run opened as setup_run does, with one stage child still RUNNING: (client, key, ids)."""
    experiment = f"finalize-{uuid.uuid4().hex[:8]}"
    key = f"key-{uuid.uuid4().hex[:8]}"
    tracker = Tracker(mlflow_server.url, safe=False)
    parent = tracker.start_pipeline_run(experiment, key, "tiny")
    child = tracker.client.create_run(
        tracker.experiment_id(experiment), run_name="train",
        tags={"mlflow.parentRunId": parent, STAGE_TAG: "train", PIPELINE_RUN_ID_TAG: key},
    ).info.run_id
    return tracker.client, mlflow_server.url, experiment, key, parent, child


@pytest.mark.integration
def test_finalize_failed_marks_parent_and_running_children(pipeline_run):
    client, url, experiment, key, parent, child = pipeline_run
    stages.finalize(url, experiment, key, "FAILED", "prep failed: missing frame scene0000_00/0.jpg")
    run = client.get_run(parent)
    assert run.info.status == "FAILED"
    assert run.data.tags["vega3d.error"] == "prep failed: missing frame scene0000_00/0.jpg"
    assert client.get_run(child).info.status == "FAILED"


@pytest.mark.integration
def test_finalize_succeeded_finishes_the_parent(pipeline_run):
    client, url, experiment, key, parent, _ = pipeline_run
    stages.finalize(url, experiment, key, "SUCCEEDED", None)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert "vega3d.error" not in run.data.tags


@pytest.mark.integration
def test_finalize_cancelled_is_failed_and_long_errors_are_cut(pipeline_run):
    client, url, experiment, key, parent, _ = pipeline_run
    stages.finalize(url, experiment, key, "CANCELED", "x" * 5000)
    run = client.get_run(parent)
    assert run.info.status == "FAILED"
    assert run.data.tags["vega3d.error"] == "x" * 4000


@pytest.mark.integration
def test_finalize_without_a_parent_yet_records_the_failure(mlflow_server):
    # setup_run itself failed: the exit handler still leaves one FAILED parent run under the key
    experiment, key = f"finalize-{uuid.uuid4().hex[:8]}", "never-set-up"
    stages.finalize(mlflow_server.url, experiment, key, "FAILED", "invalid configuration")
    tracker = Tracker(mlflow_server.url, safe=False)
    runs = tracker.client.search_runs([tracker.experiment_id(experiment)])
    assert [(r.info.status, r.data.tags[PIPELINE_RUN_ID_TAG], r.data.tags["vega3d.error"]) for r in runs] == [
        ("FAILED", key, "invalid configuration")
    ]
