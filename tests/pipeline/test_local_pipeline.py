"""The whole pipeline through kfp.local.SubprocessRunner against real SeaweedFS and MLflow servers.

One tiny synthetic data set, uploaded to the bucket; the first run (`vega3d pipeline run`, as operators type it)
goes through every stage (offline features, so extract runs too) and prints one line per step, the report and
the MLflow links; the second, with caching on, must re-execute no stage; a run on broken data must mark its
MLflow parent run FAILED, print the failed step's log tail and link, and leave nothing half-written in the bucket.
"""

import json
import os
import re
import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from pipelines.local_run import executed_tasks, run_local
from tests.data.helpers import SMALL_CONFIG
from tests.operators.pipeline_output import ANSI_ESCAPE, HEADER, pipeline_run, statuses
from vega3d import storage
from vega3d.evaluation.report import COLUMNS
from vega3d.params import pipeline_overrides
from vega3d.runs import resolve_run_config
from vega3d.testing.demo import prepare_demo_data, upload_data_root
from vega3d.tracking import PIPELINE_RUN_ID_TAG, STAGE_TAG

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TASKS = ("scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d")
STAGE_TASKS = {"prep", "extract", "train", "evaluate", "report"}
OVERRIDES = ["generative.mode=offline", "eval.max_samples=6", "train.save_steps=2"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline") / "data"
    prepare_demo_data(root, "tiny", SMALL_CONFIG)
    return root


@pytest.fixture()
def pipeline_env(seaweedfs, mlflow_server, tiny_data, monkeypatch, tmp_path):
    for key, value in {**seaweedfs.env(), **mlflow_server.env()}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("VEGA3D_CACHE", str(tmp_path / "cache"))
    prefix = seaweedfs.uri("pipeline", uuid.uuid4().hex[:8])
    data_uri = storage.join(prefix, "data")
    upload_data_root(tiny_data, data_uri)
    params = {"preset": "tiny", "max_steps": 4, "overrides": OVERRIDES, "storage_root": prefix,
              "data_uri": data_uri, "mlflow_uri": mlflow_server.url, "experiment": f"pipe-{uuid.uuid4().hex[:6]}"}
    yield params, tmp_path
    os.environ.pop("VEGA3D_PIPELINE_RUN_ID", None)


def _parent_and_children(client, experiment, run_key):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`{PIPELINE_RUN_ID_TAG}` = '{run_key}'")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return parent, {c.data.tags[STAGE_TAG]: c for c in children}


def _bucket_keys(prefix):
    fs, path = storage.filesystem(prefix)
    return [key for key in fs.find(path)]


def _cli_args(params: dict, tmp_path: Path) -> list[str]:
    """``vega3d pipeline run`` options for pipeline parameters ``params`` (values as JSON, as -p reads them)."""
    return [arg for name, value in params.items() for arg in ("-p", f"{name}={json.dumps(value)}")] + [
        "--pipeline-root", str(tmp_path / "kfp")]


def _links(line: str, params: dict, parent) -> None:
    """The MLflow line: the UI in the model-training view and this run's parent run."""
    assert line == (f"MLflow: {params['mlflow_uri']}/#/?workflowType=machine_learning  (this run: "
                    f"{params['mlflow_uri']}/#/experiments/{parent.info.experiment_id}/runs/{parent.info.run_id}"
                    "?workflowType=machine_learning)")


def _run_id(result) -> str:
    """The run id in the first line of `vega3d pipeline run`'s output."""
    header = HEADER.match(result.stdout.split("\n", 1)[0])
    assert header, result.stdout[-3000:] + result.stderr[-3000:]
    return header.group(1)


def _assert_operator_output(result, params, parent, report_md) -> Path:
    """`vega3d pipeline run`'s whole stdout: the header, one line per step (each naming its own log, which holds
    that step's output), the report, the MLflow links and the summary line. Returns the kfp run folder."""
    lines = result.stdout.splitlines()
    run_id, log_dir = HEADER.match(lines[0]).groups()
    log_dir = Path(log_dir)
    found = statuses(result.stdout)
    assert lines[1:1 + len(found)] == [m.group(0) for m in found] and {m.group(1) for m in found} == {"ok"}
    steps = [m.group(2) for m in found]
    assert {"setup-run", "prep", "extract", "train", "report", "finalize"} <= set(steps)
    assert sorted(m.group(3) for m in found if m.group(2) == "evaluate") == sorted(TASKS)
    logs = [Path(m.group(4)) for m in found]  # numbered in start order; status lines come in finish order
    assert sorted(int(path.name[:2]) for path in logs) == list(range(1, len(found) + 1))
    for step, path in zip(steps, logs, strict=True):
        assert path.parent == log_dir and path.name[3:] == f"{step}.log"
        text = path.read_text()
        assert text.count("Executing task") == 1 and f"Executing task '{step}'" in text
        assert re.search(rf"Wrote executor output file to \S+/{step}/executor_output\.json", text), step
    train_log = logs[steps.index("train")].read_text()
    assert "train: 4/4 step (100%)" in train_log and "\r" not in train_log
    # then the report as report.md holds it, the MLflow links and where kfp's outputs are
    rest = lines[1 + len(found):]
    assert rest[0] == "" and rest[1:-2] == report_md.split("\n")  # report.md ends with a newline: a blank line
    assert len(lines) == 1 + len(found) + 1 + len(report_md.split("\n")) + 2
    _links(rest[-2], params, parent)
    summary = re.match(rf"^run {run_id}: (\d+) tasks executed; step outputs under (\S+)$", rest[-1])
    assert summary, rest[-1]
    assert ANSI_ESCAPE not in result.stdout and result.stderr == ""
    run_dir = Path(summary.group(2))
    assert int(summary.group(1)) == len(executed_tasks(run_dir)) == len(found)
    return run_dir


def test_full_pipeline_then_cached_rerun(pipeline_env):
    params, tmp_path = pipeline_env
    cached = [arg for step in sorted(STAGE_TASKS) for arg in ("--cache", step)]
    result = pipeline_run(*_cli_args(params, tmp_path), *cached, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_id = _run_id(result)
    executed = executed_tasks(tmp_path / "kfp")
    assert {"setup-run", "prep", "extract", "train", "evaluate", "report", "finalize"} <= set(executed)
    assert executed.count("evaluate") == 5

    client = MlflowClient(params["mlflow_uri"])
    parent, children = _parent_and_children(client, params["experiment"], run_id)
    assert parent.info.status == "FINISHED"
    assert set(children) == {"prep", "extract", "train", *(f"eval-{t}" for t in TASKS)}
    assert all(child.info.status == "FINISHED" for child in children.values())
    for column in COLUMNS:  # the five benchmarks' table metrics, on the parent run
        value = parent.data.metrics[f"{column.task}/{column.metric}"]
        assert 0.0 <= value <= 100.0 + 1e-6 or column.metric.startswith("cider")
    assert children["train"].data.metrics["train/loss"] > 0
    assert children["eval-scanqa"].data.metrics["scanqa/em"] == parent.data.metrics["scanqa/em"]
    assert parent.data.params["preset"] == "tiny"

    # artifacts: the MLflow report went through the server into the bucket; outputs are under the prefix
    artifacts = [a.path for a in client.list_artifacts(parent.info.run_id, "report")]
    assert {"report/benchmarks.md", "report/benchmarks.png"} <= set(artifacts)
    cfg = resolve_run_config("tiny", pipeline_overrides(params), params["storage_root"],
                             params["data_uri"])
    report_md = storage.read_text(storage.join(cfg.eval.output_uri, "report.md"))
    assert "VEGA-3D (paper)" in report_md and "| ours |" in report_md
    # issue 20: the viewer as written, through the MLflow server from the bucket, and as the Kubeflow artifact
    assert {"report/viewer.html", "report/training_curves.png"} <= set(artifacts)
    written = storage.read_bytes(storage.join(cfg.eval.output_uri, "viewer.html"))
    downloaded = client.download_artifacts(parent.info.run_id, "report/viewer.html", str(tmp_path / "download"))
    assert Path(downloaded).read_bytes() == written
    run_dir = _assert_operator_output(result, params, parent, report_md)
    kfp_html = [p for p in run_dir.rglob("viewer") if p.is_file()]
    assert len(kfp_html) == 1 and kfp_html[0].read_bytes() == written
    assert "| scanqa | 6 |" in report_md  # eval.max_samples=6 records per task in the records summary
    pictures = [a.path for a in client.list_artifacts(parent.info.run_id, "features")]
    assert any(p.endswith("_pca.png") for p in pictures) and any(p.endswith("_correspondence.png") for p in pictures)
    assert any(k.startswith("features/") and k.endswith("/consistency") for k in parent.data.metrics)
    keys = _bucket_keys(params["storage_root"])
    assert any(k.endswith("processed/scanqa_val_llava_style.json") for k in keys)
    assert any("/features/" in k and k.endswith(".safetensors") for k in keys)
    for task in TASKS:
        assert any(k.endswith(f"eval/{task}/metrics.json") for k in keys), task
    assert not [k for k in keys if ".tmp" in k.rsplit("/", 1)[-1]]
    version = client.get_model_version_by_alias("vega3d", "candidate")
    assert version.tags["vega3d.checkpoint_uri"].startswith(params["storage_root"])
    _assert_mlflow_as_users_expect(client, params, run_id, parent, children, version, report_md)

    # An identical second run: every stage but the report comes from the cache; the report registers the
    # same checkpoint again, which must reuse the version instead of making a second one.
    second = run_local(params, tmp_path / "kfp", enable_caching=True, cached_steps=sorted(STAGE_TASKS - {"report"}))
    assert STAGE_TASKS & set(second.executed) == {"report"}, second.executed
    assert [v.version for v in client.search_model_versions("name = 'vega3d'")] == [version.version]
    assert client.get_model_version_by_alias("vega3d", "candidate").version == version.version
    second_parent, _ = _parent_and_children(client, params["experiment"], second.run_id)
    assert json.loads(second_parent.data.tags["vega3d.gate"])["version"] == version.version


def _assert_mlflow_as_users_expect(client, params, run_key, parent, children, version, report_md):
    """Kind tag, run names and descriptions, dataset inputs, the logged model and its signature, the gate."""
    import mlflow

    experiment = client.get_experiment_by_name(params["experiment"])
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the model-training view
    assert parent.info.run_name == f"tiny-wan_t2v-token_gated-{run_key.rsplit('-', 1)[-1][:6]}"
    assert "preset **tiny**" in parent.data.tags["mlflow.note.content"]
    assert children["train"].data.tags["mlflow.note.content"].startswith("Trains VEGA-3D with DeepSpeed")
    # datasets: the data root on every stage that reads it, the offline feature set on train and eval
    contexts = {"prep": "preparation", "extract": "extraction", "train": "training", "eval-scanqa": "evaluation"}
    for stage, context in contexts.items():
        inputs = client.get_run(children[stage].info.run_id).inputs.dataset_inputs
        by_name = {i.dataset.name: i for i in inputs}
        assert "data-root:data" in by_name, (stage, list(by_name))
        root = by_name["data-root:data"]
        assert json.loads(root.dataset.source) == {"uri": params["data_uri"]} and root.dataset.source_type == "s3"
        assert {t.key: t.value for t in root.tags}["mlflow.data.context"] == context
        if stage in ("train", "eval-scanqa"):
            assert any(name.startswith("features:wan_t2v") for name in by_name), list(by_name)
    digests = {client.get_run(children[s].info.run_id).inputs.dataset_inputs[0].dataset.digest for s in contexts}
    assert len(digests) == 1  # the same data root seen by every stage
    # counts are params/tags, not metrics
    assert int(children["prep"].data.params["records_scanqa_val"]) > 0
    assert not [k for k in children["prep"].data.metrics if k.startswith(("records_", "scenes_"))]
    assert int(children["train"].data.tags["vega3d.train_steps"]) == 4 and "train/steps" not in children["train"].data.metrics
    # the registered version points at a logged model whose MLmodel carries the signature
    assert version.source.startswith("models:/m-")
    model_id = version.source.removeprefix("models:/")
    logged = client.get_logged_model(model_id)
    assert logged.source_run_id == parent.info.run_id
    assert model_id in [o.model_id for o in client.get_run(parent.info.run_id).outputs.model_outputs]
    assert logged.params["checkpoint_uri"] == version.tags["vega3d.checkpoint_uri"]
    signature = mlflow.models.Model.load(version.source).signature
    assert [c.name for c in signature.inputs.inputs] == ["task", "scene_id", "question", "box"]
    assert [c.name for c in signature.outputs.inputs] == ["answer", "boxes"]
    # the gate decision as JSON (tag + artifact) and as a table in the report
    gate = json.loads(parent.data.tags["vega3d.gate"])
    assert gate["version"] == version.version and gate["promoted"] is True and gate["reason"] == "no champion yet"
    assert set(gate["comparison"]) == set(gate["metrics"]) and gate["metrics"]
    assert f"## Champion gate: version {version.version} promoted to champion" in report_md
    for name in gate["metrics"]:
        assert f"| {name} | {gate['comparison'][name]['candidate']:.2f} | - |" in report_md


def test_failing_step_marks_parent_failed_and_leaves_no_partial_objects(pipeline_env):
    params, tmp_path = pipeline_env
    # A frame listed in the EmbodiedScan info disappears from the bucket: prep's check must refuse the data.
    fs, path = storage.filesystem(params["data_uri"])
    depth = sorted(k for k in fs.find(path) if k.endswith(".png") and "posed_images" in k)[0]
    fs.rm(depth)
    result = pipeline_run(*_cli_args(params, tmp_path), "--log-dir", str(tmp_path / "my-logs"), cwd=tmp_path)
    assert result.returncode == 1
    client = MlflowClient(params["mlflow_uri"])
    parent, children = _parent_and_children(client, params["experiment"], _run_id(result))
    assert parent.info.status == "FAILED"
    # the operator sees prep FAILED, its log's tail (in the log given), the MLflow links, one error/fix pair
    prep = [m for m in statuses(result.stdout) if m.group(2) == "prep"]
    assert [m.group(1) for m in prep] == ["FAILED"] and Path(prep[0].group(4)).parent == tmp_path / "my-logs"
    lines = result.stdout.splitlines()
    tail_from = lines.index(f"last 20 lines of {prep[0].group(4)}:")
    assert len(lines) == tail_from + 22 and "PrepError: data root" in "\n".join(lines[tail_from:])
    _links(lines[-1], params, parent)
    assert result.stderr.splitlines() == [f"error: pipeline run {_run_id(result)} failed: prep",
                                          f"  fix: see the step's log: {prep[0].group(4)}"]
    assert children["prep"].info.status == "FAILED"
    assert "train" not in children
    keys = _bucket_keys(params["data_uri"])
    assert not [k for k in keys if "/processed/" in k or "/metadata/scannet_select_frames" in k]
    assert not [k for k in keys if ".tmp" in k.rsplit("/", 1)[-1]]


def test_run_given_a_name_keeps_one_parent_run_holding_every_child(pipeline_env):
    """As in the cluster: every step's key is the Kubeflow run id (the pod label), and the user names the run."""
    params, tmp_path = pipeline_env
    run = {**params, "overrides": ["train.save_steps=2"], "max_steps": 2, "run_eval": False, "run_name": "nightly-7"}
    run_local(run, tmp_path / "kfp", run_id="kfp-run-0001")  # sets VEGA3D_PIPELINE_RUN_ID as the pod label does
    client = MlflowClient(params["mlflow_uri"])
    exp = client.get_experiment_by_name(params["experiment"])
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1, [(p.info.run_name, p.data.tags.get(PIPELINE_RUN_ID_TAG)) for p in parents]
    parent = parents[0]
    assert parent.info.run_name == "nightly-7" and parent.data.tags[PIPELINE_RUN_ID_TAG] == "kfp-run-0001"
    children = {r.data.tags[STAGE_TAG] for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert children == {"prep", "train"} and len(runs) == 3
    assert parent.info.status == "FINISHED"
