"""Each component's ``python_func`` called as kubeflow/pipelines-components tests do: real inputs (a tiny
synthetic data root, tiny checkpoints, a real MLflow server where the step talks to one), asserted outputs.

Output artifacts are kfp's own classes on local paths; the multi-node launcher is covered by
tests/cluster/test_trainjob.py (it needs a Kubernetes API).
"""

import json
import uuid
from types import SimpleNamespace

import pytest
import yaml
from kfp import dsl
from mlflow.tracking import MlflowClient

from components.evaluate import evaluate
from components.extract import extract
from components.features import features_needed, no_features
from components.finalize import finalize
from components.prep import prep
from components.report import report
from components.setup_run import setup_run
from components.train import train
from tests.data.helpers import SMALL_CONFIG
from vega3d import storage
from vega3d.config import ALL_TASKS, load_config
from vega3d.params import ParamError
from vega3d.runs import config_digest, config_from_yaml, config_to_yaml
from vega3d.testing.demo import prepare_demo_data
from vega3d.tracking import PIPELINE_RUN_ID_TAG

FAST = ["eval.max_samples=2", "train.max_steps=1", "train.save_steps=1", "train.per_device_batch_size=2"]


def _setup(tmp_path, settings=None, overrides=(), mlflow_uri="", experiment="x", run_name=""):
    config_file = dsl.Artifact(name="config_file", uri=str(tmp_path / "setup" / "config_file"))
    (tmp_path / "setup").mkdir(exist_ok=True)
    config, parent = setup_run.python_func(
        preset="tiny", settings=settings or {}, overrides=list(overrides), storage_root=str(tmp_path / "store"),
        data_uri=str(tmp_path / "data"), mlflow_uri=mlflow_uri, experiment=experiment, run_name=run_name,
        job_id="kfp-job-1", config_file=config_file,
        memory_plan=dsl.Markdown(name="memory_plan", uri=str(tmp_path / "setup" / "memory_plan")),
    )
    assert "GPU(s)" in (tmp_path / "setup" / "memory_plan").read_text()  # the plan's line for the UI
    return config, parent, config_file


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [((), False), (("generative.mode=offline",), True), (("generative.backbone=none", "generative.mode=offline"), False)],
)
def test_features_needed(overrides, expected):
    assert features_needed.python_func(config=config_to_yaml(load_config("tiny", list(overrides)))) is expected


def test_no_features_is_the_empty_feature_id():
    assert no_features.python_func() == ""


def test_setup_run_resolves_settings_once_into_the_config(tmp_path):
    # settings arrive as the pipeline hands them over: numbers as text or floats, unset ones as None
    config, parent, config_file = _setup(tmp_path, {"fusion": "add", "frames": "8.0", "lr": None, "num_gpus": 1.0},
                                         ["eval.max_samples=3"])
    cfg = config_from_yaml(config)
    assert (cfg.model.fusion, cfg.data.frames_upbound, cfg.train.nproc, cfg.eval.max_samples) == ("add", 8, 1, 3)
    assert cfg.train.lr == load_config("tiny").train.lr  # None keeps the preset's
    assert cfg.data.root == str(tmp_path / "data")
    assert cfg.train.output_uri == str(tmp_path / "store" / "runs" / config_digest(cfg) / "train")
    assert parent == "" and (tmp_path / "setup" / "config_file").read_text() == config


def test_setup_run_refuses_a_bad_setting_by_name(tmp_path):
    with pytest.raises(ParamError, match="frames='eight'"):
        _setup(tmp_path, {"frames": "eight"})
    with pytest.raises(ValueError, match="model.fusion"):
        _setup(tmp_path, {"fusion": "glue"})


@pytest.mark.integration
def test_setup_and_finalize_key_the_parent_run_by_the_kubeflow_run(tmp_path, mlflow_server, monkeypatch):
    experiment = f"comp-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("VEGA3D_PIPELINE_RUN_ID", "kfp-run-9")
    _, parent, _ = _setup(tmp_path, mlflow_uri=mlflow_server.url, experiment=experiment, run_name="my run")
    status = SimpleNamespace(state="FAILED", error_message="prep: missing frame")
    finalize.python_func(mlflow_uri=mlflow_server.url, experiment=experiment, job_id="kfp-job-1", status=status)
    run = MlflowClient(mlflow_server.url).get_run(parent)
    assert (run.info.run_name, run.data.tags[PIPELINE_RUN_ID_TAG]) == ("my run", "kfp-run-9")
    assert run.info.status == "FAILED" and run.data.tags["vega3d.error"] == "prep: missing frame"
    assert run.data.params["model.fusion"] == "token_gated"


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("components") / "data"
    prepare_demo_data(root, "tiny", SMALL_CONFIG)
    return root


@pytest.fixture(scope="module")
def prepared(tiny_root, tmp_path_factory):
    """setup_run then prep on the tiny root (local storage, no tracking): (config, data artifact, tmp)."""
    tmp = tmp_path_factory.mktemp("prepared")
    config, _ = setup_run.python_func(
        preset="tiny", settings={}, overrides=[*FAST, "generative.mode=offline"], storage_root=str(tmp / "store"),
        data_uri=str(tiny_root), mlflow_uri="", experiment="x", run_name="", job_id="j",
        config_file=dsl.Artifact(name="c", uri=str(tmp / "config")),
        memory_plan=dsl.Markdown(name="m", uri=str(tmp / "memory_plan")),
    )
    data = dsl.Dataset(name="data", uri=str(tmp / "data-artifact"))
    summary = dsl.Metrics(name="summary", uri=str(tmp / "summary"))
    uri = prep.python_func(config=config, data=data, summary=summary)
    return config, data, summary, uri, tmp


@pytest.mark.slow
def test_prep_publishes_the_records_and_counts(prepared, tiny_root):
    config, data, summary, uri, _ = prepared
    assert uri == str(tiny_root) == data.metadata["uri"]
    counts = json.loads(open(summary.path).read())
    assert counts["scenes_train"] == 2 and counts["scenes_val"] == 1
    for task in ALL_TASKS:
        records = json.loads(next((tiny_root / "processed").glob(f"{task}_*_llava_style.json")).read_text())
        assert len(records) > 0
    assert {k: v for k, v in data.metadata.items() if k != "uri"} == counts


@pytest.mark.slow
def test_extract_train_and_evaluate_components(prepared):
    config, data, _, _, tmp = prepared
    features = dsl.Dataset(name="features", uri=str(tmp / "features"))
    feature_id = extract.python_func(config=config, data=data, features=features,
                                     summary=dsl.Metrics(name="s", uri=str(tmp / "extract-summary")))
    assert feature_id == features.metadata["feature_id"] and len(feature_id) > 8
    assert storage.exists(storage.join(features.metadata["uri"], feature_id, "manifest.json"))

    model = dsl.Model(name="model", uri=str(tmp / "model"))
    train_summary = dsl.Metrics(name="s", uri=str(tmp / "train-summary"))
    model_uri = train.python_func(config=config, data=data, feature_id=feature_id, model=model, summary=train_summary)
    assert model_uri == model.metadata["uri"] == storage.join(config_from_yaml(config).train.output_uri, "model")
    assert storage.exists(storage.join(model_uri, "config.json"))
    trained = json.loads(open(train_summary.path).read())
    assert trained["train/steps"] == 1.0 and trained["train/final_loss"] > 0

    metrics = dsl.Metrics(name="metrics", uri=str(tmp / "eval-metrics"))
    result = json.loads(evaluate.python_func(config=config, task="scanqa", data=data, model=model,
                                             feature_id=feature_id, metrics=metrics))
    assert result["task"] == "scanqa" and set(result) >= {"em", "cider", "bleu4"}
    assert all(0.0 <= v <= 100.0 for k, v in result.items() if k in ("em", "bleu4"))
    assert json.loads(open(metrics.path).read()) == result
    saved = yaml.safe_load(storage.read_text(storage.join(config_from_yaml(config).eval.output_uri, "scanqa",
                                                          "metrics.json")))
    assert saved["em"] == pytest.approx(result["em"])

    # report: the table, the viewer of the evaluated records and no gate (tracking is off)
    table = dsl.Markdown(name="table", uri=str(tmp / "table"))
    viewer = dsl.HTML(name="viewer", uri=str(tmp / "viewer.html"))
    gate = json.loads(report.python_func(config=config, model=model, task_metrics=[json.dumps(result)], table=table,
                                         viewer=viewer))
    cfg = config_from_yaml(config)
    assert gate == {"promoted": False, "version": None, "report_uri": storage.join(cfg.eval.output_uri, "report.md")}
    markdown = (tmp / "table").read_text()
    assert markdown == storage.read_text(gate["report_uri"])
    assert f"| {result['cider']:.1f} | {result['em']:.1f} |" in markdown
    page = (tmp / "viewer.html").read_bytes()  # the Kubeflow HTML artifact is the viewer beside report.md
    assert page.startswith(b"<!DOCTYPE html>")
    assert page == storage.read_bytes(storage.join(cfg.eval.output_uri, "viewer.html"))
