"""The whole tiny pipeline with every step in vega3d-cpu (kfp.local.DockerRunner) against real SeaweedFS and
MLflow, beside the same run through kfp.local.SubprocessRunner: the same five metrics.json, a FINISHED MLflow
parent run with its stage children, the model registered; the steps wrote their outputs as UID 10001.
"""

import json
import uuid

import pytest
from mlflow.tracking import MlflowClient

from pipelines.local_run import run_local
from pipelines.runners import step_user
from tests.pipeline.test_local_pipeline import OVERRIDES, TASKS, _parent_and_children, tiny_data  # noqa: F401
from vega3d import storage
from vega3d.params import pipeline_overrides
from vega3d.runs import resolve_run_config
from vega3d.testing.demo import upload_data_root

pytestmark = [pytest.mark.containers, pytest.mark.integration]
MAX_STEPS = 4


def _run(runner, seaweedfs, mlflow_server, tiny_data, tmp_path):  # noqa: F811
    """One pipeline run on its own storage prefix and experiment; returns (params, LocalRun)."""
    prefix = seaweedfs.uri("containers", runner, uuid.uuid4().hex[:8])
    data_uri = storage.join(prefix, "data")
    upload_data_root(tiny_data, data_uri)
    params = {"preset": "tiny", "max_steps": MAX_STEPS, "overrides": OVERRIDES, "storage_root": prefix,
              "data_uri": data_uri, "mlflow_uri": mlflow_server.url, "experiment": f"{runner}-{uuid.uuid4().hex[:6]}"}
    return params, run_local(params, tmp_path / runner / "kfp", runner=runner)


def _metrics(params) -> dict[str, dict]:
    cfg = resolve_run_config("tiny", pipeline_overrides({"max_steps": MAX_STEPS, "overrides": OVERRIDES}),
                             params["storage_root"], params["data_uri"])
    return {task: json.loads(storage.read_text(storage.join(cfg.eval.output_uri, task, "metrics.json")))
            for task in TASKS}


def test_pipeline_in_containers_matches_the_subprocess_run(docker_client, seaweedfs, mlflow_server, tiny_data,  # noqa: F811
                                                          monkeypatch, tmp_path):
    for key, value in {**seaweedfs.env(), **mlflow_server.env(), "OMP_NUM_THREADS": "1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("VEGA3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VEGA3D_PIPELINE_RUN_ID", raising=False)

    sub_params, sub_run = _run("subprocess", seaweedfs, mlflow_server, tiny_data, tmp_path)
    params, run = _run("docker", seaweedfs, mlflow_server, tiny_data, tmp_path)

    assert {"setup-run", "prep", "extract", "train", "evaluate", "report", "finalize"} <= set(run.executed)
    assert run.executed == sub_run.executed and run.executed.count("evaluate") == 5
    # every step ran in a container as the step user (10001, the image's, when pytest runs as root)
    outputs = list(run.run_dir.rglob("executor_output.json"))
    assert len(outputs) == len(run.executed) and {p.stat().st_uid for p in outputs} == {int(step_user().split(":")[0])}

    metrics = _metrics(params)
    assert metrics == _metrics(sub_params)  # identical numbers from the image and from this venv
    assert set(metrics) == set(TASKS) and all(metrics[task] for task in TASKS)

    client = MlflowClient(mlflow_server.url)
    parent, children = _parent_and_children(client, params["experiment"], run.run_id)
    assert parent.info.status == "FINISHED"
    assert set(children) == {"prep", "extract", "train", *(f"eval-{t}" for t in TASKS)}
    assert all(child.info.status == "FINISHED" for child in children.values())
    assert children["eval-scanqa"].data.metrics["scanqa/em"] == metrics["scanqa"]["em"]
    gate = json.loads(parent.data.tags["vega3d.gate"])  # the report step in the container registered the model
    version = client.get_model_version("vega3d", str(gate["version"]))
    # identical models share one registry version: the first of the two runs registered it
    assert version.tags["vega3d.checkpoint_uri"].startswith((params["storage_root"], sub_params["storage_root"]))
