"""vega3d.tracking against a real MLflow server (SQLite backend, artifacts proxied to SeaweedFS)."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import boto3
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from vega3d.config import Vega3DConfig
from vega3d.testing.services import LOOPBACK, MlflowServer, SeaweedFS, free_port
from vega3d.tracking import (
    CANDIDATE,
    CHAMPION,
    PARAM_VALUE_LIMIT,
    Tracker,
    TrackingError,
    flatten_params,
    metric_key,
)

# ------------------------------------------------------------------------------------------------ unit


def test_flatten_params_dots_nested_keys_and_cuts_long_values() -> None:
    flat = flatten_params({"model": {"llm": {"hidden": 64}, "fusion": "adaptive"}, "scenes": ["a", "b"],
                           "note": "x" * 800, "lr": 2e-5, "ckpt": None})  # fmt: skip
    assert flat == {
        "model.llm.hidden": "64",
        "model.fusion": "adaptive",
        "scenes": '["a", "b"]',
        "note": "x" * (PARAM_VALUE_LIMIT - 3) + "...",
        "lr": "2e-05",
        "ckpt": "None",
    }
    assert len(flat["note"]) == PARAM_VALUE_LIMIT == 500


def test_flatten_params_of_the_real_config_matches_its_flat_dict() -> None:
    config = Vega3DConfig()
    flat = flatten_params(config)
    expected = config.to_flat_dict()
    assert sorted(flat) == sorted(metric_key(k) for k in expected)
    assert flat["tracking.experiment"] == "vega3d"


def test_metric_key_replaces_invalid_characters() -> None:
    assert metric_key("scanrefer/acc@0.25") == "scanrefer/acc_0.25"
    assert metric_key("sqa3d/EM-1 (what)") == "sqa3d/EM-1 _what_"


def test_unreachable_server_warns_and_work_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://{LOOPBACK}:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="vega3d.tracking"):
        tracker = Tracker(url, safe=True, probe_timeout=1)
    assert not tracker.enabled
    assert any("does not answer" in r.getMessage() and "work goes on" in r.getMessage() for r in caplog.records)
    assert tracker.start_pipeline_run("exp", "run-1", "tiny") is None
    with tracker.stage_run(None, "train") as stage:
        stage.log_metrics({"loss": 1.0}, step=1)
        stage.log_params({"a": 1})
        steps_done = 3  # the training loop body runs even though nothing is tracked
    assert stage.run_id is None and steps_done == 3
    with pytest.raises(TrackingError, match="does not answer /health"):
        Tracker(url, safe=False, probe_timeout=1)


def test_no_uri_disables_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Tracker()
    assert not tracker.enabled
    assert tracker.register_model("m", "s3://b/ckpt") is None


# ---------------------------------------------------------------------------------------- real server


@pytest.fixture
def tracker(mlflow_server: MlflowServer) -> Tracker:
    return Tracker(mlflow_server.url, safe=False)


@pytest.fixture
def client(mlflow_server: MlflowServer) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_server.url)


@pytest.fixture
def experiment() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.mark.integration
def test_parent_run_is_tagged_and_found_again(tracker: Tracker, client: MlflowClient, experiment: str) -> None:
    parent = tracker.start_pipeline_run(experiment, "kfp-run-7", "tiny", git_commit="abc123", data_version="d42")
    tags = client.get_run(parent).data.tags
    assert {k: tags[k] for k in ("vega3d.pipeline_run_id", "vega3d.preset", "vega3d.data_version")} == {
        "vega3d.pipeline_run_id": "kfp-run-7", "vega3d.preset": "tiny", "vega3d.data_version": "d42",
    }  # fmt: skip
    assert tags["mlflow.source.git.commit"] == "abc123"
    assert client.get_run(parent).info.run_name == "kfp-run-7"
    assert tracker.start_pipeline_run(experiment, "kfp-run-7", "tiny") == parent
    assert tracker.start_pipeline_run(experiment, "kfp-run-8", "tiny") != parent


@pytest.mark.integration
def test_stage_runs_are_children_of_the_parent(tracker: Tracker, client: MlflowClient, experiment: str) -> None:
    parent = tracker.start_pipeline_run(experiment, "p1", "tiny", git_commit="abc", data_version="d1")
    with tracker.stage_run(parent, "prep") as prep:
        prep.log_metrics({"records": 120})
    with tracker.stage_run(parent, "train") as train:
        train.log_metrics({"loss": 2.5}, step=0)
        train.log_metrics({"loss": 1.75}, step=1)
    with tracker.stage_run(parent, "train") as train_again:  # a retried step continues its child run
        train_again.log_metrics({"loss": 1.5}, step=2)

    assert train_again.run_id == train.run_id
    children = tracker.child_runs(parent)
    assert children == {"prep": prep.run_id, "train": train.run_id}
    for stage, run_id in children.items():
        run = client.get_run(run_id)
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["vega3d.stage"] == stage
        assert run.data.tags["vega3d.pipeline_run_id"] == "p1"
        assert run.info.status == "FINISHED"
    history = client.get_metric_history(train.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 2.5), (1, 1.75), (2, 1.5)]
    assert client.get_run(prep.run_id).data.metrics == {"records": 120.0}


@pytest.mark.integration
def test_failures_mark_runs_failed(tracker: Tracker, client: MlflowClient, experiment: str) -> None:
    parent = tracker.start_pipeline_run(experiment, "p-fail", "tiny")
    with pytest.raises(RuntimeError, match="out of memory"):
        with tracker.stage_run(parent, "extract") as extract:
            raise RuntimeError("out of memory")
    # a step killed without reporting leaves its child RUNNING
    experiment_id = client.get_run(parent).info.experiment_id
    killed = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent, "vega3d.stage": "train"})
    assert client.get_run(killed.info.run_id).info.status == "RUNNING"

    tracker.set_run_status(parent, "FAILED")  # what the pipeline's exit handler does

    assert client.get_run(extract.run_id).info.status == "FAILED"
    assert client.get_run(killed.info.run_id).info.status == "FAILED"
    parent_info = client.get_run(parent).info
    assert parent_info.status == "FAILED" and parent_info.end_time is not None
    with pytest.raises(ValueError, match="run status 'DONE'"):
        tracker.set_run_status(parent, "DONE")


@pytest.mark.integration
def test_params_are_flattened_cut_and_batched(tracker: Tracker, client: MlflowClient, experiment: str) -> None:
    parent = tracker.start_pipeline_run(experiment, "p-params", "tiny")
    config = {"group": {f"key{i:03d}": i for i in range(250)}, "long": "y" * 900}  # 251 params: 3 batches
    tracker.log_params_flat(parent, config)
    params = client.get_run(parent).data.params
    assert len(params) == 251
    assert params["group.key000"] == "0" and params["group.key249"] == "249"
    assert params["long"] == "y" * 497 + "..."

    with tracker.stage_run(parent, "train") as train:
        train.log_params(Vega3DConfig())
    logged = client.get_run(train.run_id).data.params
    assert logged == flatten_params(Vega3DConfig())


@pytest.mark.integration
def test_artifacts_land_in_the_seaweedfs_bucket(
    tracker: Tracker, client: MlflowClient, experiment: str, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    parent = tracker.start_pipeline_run(experiment, "p-art", "tiny")
    table = tmp_path / "table.md"
    table.write_text("| task | acc |\n| scanrefer | 0.5 |\n")
    tracker.log_artifact(parent, table, "report")
    tracker.log_text(parent, "hello", "notes/hello.txt")

    s3 = boto3.client(
        "s3", endpoint_url=seaweedfs.endpoint, aws_access_key_id=seaweedfs.access_key,
        aws_secret_access_key=seaweedfs.secret_key, region_name="us-east-1",
    )  # fmt: skip
    listing = s3.list_objects_v2(Bucket=seaweedfs.bucket, Prefix="mlflow/")
    keys = sorted(obj["Key"] for obj in listing.get("Contents", []) if f"/{parent}/" in obj["Key"])
    experiment_id = client.get_run(parent).info.experiment_id
    assert keys == [
        f"mlflow/{experiment_id}/{parent}/artifacts/notes/hello.txt",
        f"mlflow/{experiment_id}/{parent}/artifacts/report/table.md",
    ]
    body = s3.get_object(Bucket=seaweedfs.bucket, Key=keys[1])["Body"].read()
    assert body == table.read_bytes()
    assert [a.path for a in client.list_artifacts(parent, "report")] == ["report/table.md"]


@pytest.mark.integration
def test_champion_moves_only_when_the_candidate_is_better(
    tracker: Tracker, client: MlflowClient, experiment: str
) -> None:
    model = f"vega3d-{uuid.uuid4().hex[:8]}"
    gate = ["scanrefer/acc@0.25", "scan2cap/cider"]

    def register(metrics: dict[str, float], tag: str) -> str:
        run = tracker.start_pipeline_run(experiment, f"p-{tag}", "tiny")
        tracker.log_metrics(run, metrics)
        return tracker.register_model(model, f"s3://bucket/runs/{tag}/checkpoint", run_id=run)

    v1 = register({"scanrefer/acc@0.25": 0.50, "scan2cap/cider": 0.30}, "a")
    first = tracker.promote_if_better(model, v1, gate)
    assert first.promoted and first.previous_champion is None
    assert tracker.alias_version(model, CHAMPION) == v1

    v2 = register({"scanrefer/acc@0.25": 0.60, "scan2cap/cider": 0.30}, "b")  # better on one, equal on one
    second = tracker.promote_if_better(model, v2, gate)
    assert second.promoted and second.previous_champion == v1
    assert second.comparison == {"scanrefer/acc@0.25": (0.60, 0.50), "scan2cap/cider": (0.30, 0.30)}
    assert tracker.alias_version(model, CHAMPION) == v2

    v3 = register({"scanrefer/acc@0.25": 0.70, "scan2cap/cider": 0.20}, "c")  # better on one, worse on one
    third = tracker.promote_if_better(model, v3, gate)
    assert not third.promoted and "worse on 1" in third.reason
    v4 = register({"scanrefer/acc@0.25": 0.60, "scan2cap/cider": 0.30}, "d")  # a tie is not an improvement
    assert not tracker.promote_if_better(model, v4, gate).promoted
    assert tracker.alias_version(model, CHAMPION) == v2
    assert tracker.alias_version(model, CANDIDATE) == v4
    fourth = client.get_model_version(model, v4)
    assert fourth.tags["vega3d.checkpoint_uri"] == "s3://bucket/runs/d/checkpoint"
    assert fourth.source.startswith("models:/m-")  # an MLflow logged model with our signature
    logged = client.get_logged_model(fourth.source.removeprefix("models:/"))
    assert logged.params["checkpoint_uri"] == "s3://bucket/runs/d/checkpoint" and logged.status == "READY"
    assert register({"scanrefer/acc@0.25": 0.1, "scan2cap/cider": 0.1}, "d") == v4  # same checkpoint: same version

    # lower is better for a loss: 0.9 < 1.0 wins even though the number is smaller
    v5 = register({"scanrefer/acc@0.25": 0.60, "scan2cap/cider": 0.30, "val_loss": 0.9}, "e")
    decision = tracker.promote_if_better(model, v5, [*gate, "val_loss"], higher_is_better={"val_loss": False})
    assert decision.promoted  # the champion's run has no val_loss: counts as beaten
    v6 = register({"scanrefer/acc@0.25": 0.60, "scan2cap/cider": 0.30, "val_loss": 1.1}, "f")
    assert not tracker.promote_if_better(model, v6, [*gate, "val_loss"], higher_is_better={"val_loss": False}).promoted
    assert tracker.alias_version(model, CHAMPION) == v5

    with pytest.raises(ValueError, match="has no metric bleu"):
        tracker.promote_if_better(model, v6, ["bleu"])


@pytest.mark.integration
def test_safe_mode_turns_a_refused_call_into_a_warning(
    mlflow_server: MlflowServer, client: MlflowClient, experiment: str, caplog: pytest.LogCaptureFixture
) -> None:
    strict = Tracker(mlflow_server.url, safe=False)
    safe = Tracker(mlflow_server.url, safe=True)
    parent = safe.start_pipeline_run(experiment, "p-safe", "tiny")
    safe.log_params_flat(parent, {"lr": 1e-4})
    with pytest.raises(MlflowException):  # MLflow params are immutable: the server refuses a new value
        strict.log_params_flat(parent, {"lr": 2e-4})
    with caplog.at_level(logging.WARNING, logger="vega3d.tracking"):
        safe.log_params_flat(parent, {"lr": 2e-4})
    assert any("log_params_flat failed" in r.getMessage() for r in caplog.records)
    assert safe.enabled  # the server still answers: only that call was lost
    safe.log_metrics(parent, {"loss": 0.5})
    assert client.get_run(parent).data.metrics == {"loss": 0.5}
    assert client.get_run(parent).data.params == {"lr": "0.0001"}


@pytest.mark.integration
def test_other_ranks_do_not_log(
    mlflow_server: MlflowServer, client: MlflowClient, experiment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "1")
    tracker = Tracker(mlflow_server.url, safe=False)
    assert not tracker.enabled
    assert tracker.start_pipeline_run(experiment, "p-rank1", "tiny") is None
    assert client.get_experiment_by_name(experiment) is None
