"""The pipeline's stages as plain functions: what each Kubeflow component calls (no kfp here).

Each stage takes the resolved run config as YAML (identical settings -> identical input -> cache hits),
stages the data it reads from the storage root into a local working copy, runs the real work of
vega3d.data / generative / train / evaluation, publishes what it wrote back under the storage root, and logs
a child run under the MLflow parent run of its pipeline run. The parent run is found by the pipeline run
key in ``VEGA3D_PIPELINE_RUN_ID`` (set from the pod's run-id label in the cluster, by the local runner on one
machine), so that per-run ids never enter the steps' inputs and caching stays content-based.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from vega3d import staging, storage
from vega3d.config import Vega3DConfig
from vega3d.logs import ensure_logging
from vega3d.runs import config_digest, config_from_yaml, config_to_yaml, resolve_run_config

logger = logging.getLogger(__name__)
# Every pipeline step imports this module first: its log gets the project's one format, at the level the run
# was started with (VEGA3D_VERBOSITY), with known third-party noise silenced (vega3d.logs).
ensure_logging()

RUN_KEY_ENV = "VEGA3D_PIPELINE_RUN_ID"
# What steps stage down from the data root: everything except the feature store.
DATA_SUBPATHS = ["scannet", "embodiedscan", "metadata", "benchmark", "processed", "models", "synthetic_truth.json"]
# Folders of the data root that prep writes (published back to the storage root).
PREP_OUTPUTS = ("metadata", "processed", "scannet/pcd_with_global_alignment")


def _tracker(cfg: Vega3DConfig, safe: bool = True):
    from vega3d.tracking import Tracker

    return Tracker(cfg.tracking.uri, safe=safe)


def run_key(job_id: str = "") -> str:
    """The one key of the current pipeline run in MLflow: the Kubeflow run id.

    Every step reads it from ``VEGA3D_PIPELINE_RUN_ID`` (the pod's run-id label in the cluster, set by the local
    runner on one machine); setup and the exit handler, which also receive the run id as ``job_id``, fall back
    to it only when the variable is missing. A user-given run name never becomes a key (it names the run).
    """
    return os.environ.get(RUN_KEY_ENV) or job_id


def _parent_run(tracker, cfg: Vega3DConfig) -> str | None:
    """The parent run of the current pipeline run (None when tracking is off or the key is unknown)."""
    key = run_key()
    if not tracker.enabled:
        return None
    if not key:
        logger.warning("%s is not set: this step's MLflow run is not attached to a pipeline run", RUN_KEY_ENV)
        return None
    return tracker.start_pipeline_run(cfg.tracking.experiment, key, cfg.preset)


def _local_config(cfg: Vega3DConfig, data_dir: Path) -> Vega3DConfig:
    """The config with the data root pointing at the local working copy; checkpoints resolved locally.

    Relative checkpoint paths live under the data root (already staged); a checkpoint given as a URI elsewhere
    is staged down on its own.
    """
    local = cfg.model_copy(update={"data": cfg.data.model_copy(update={"root": str(data_dir)})})
    local = local.with_paths_under_root()
    for section in ("model", "generative"):
        part = getattr(local, section)
        if storage.is_remote(part.checkpoint):
            staged = str(staging.stage_down(part.checkpoint))
            local = local.model_copy(update={section: part.model_copy(update={"checkpoint": staged})})
    return local


def setup_run(
    preset: str,
    overrides: list[str],
    storage_root: str,
    data_uri: str,
    mlflow_uri: str,
    experiment: str,
    run_name: str = "",
    job_id: str = "",
) -> tuple[str, str]:
    """Resolve and validate the config; open the MLflow parent run. Returns (config YAML, parent run id or "").

    The parent run is keyed by ``run_key(job_id)`` like every other step's lookup, and named ``run_name``
    (default: the key).
    """
    cfg = resolve_run_config(preset, overrides, storage_root, data_uri, mlflow_uri or None, experiment)
    tracker = _tracker(cfg, safe=False)
    parent = None
    if tracker.enabled:
        from vega3d.mlflow_meta import DESCRIPTION_TAG, pipeline_description
        from vega3d.mlflow_meta import run_name as default_run_name

        key = run_key(job_id)
        name = run_name or default_run_name(cfg.preset, cfg.generative.backbone, cfg.model.fusion, key)
        tags = {"vega3d.config_digest": config_digest(cfg), DESCRIPTION_TAG: pipeline_description(cfg, key)}
        parent = tracker.start_pipeline_run(experiment, key, cfg.preset, data_version=data_uri, run_name=name,
                                            tags=tags)
        tracker.log_params_flat(parent, cfg.model_dump(mode="json"))
    return config_to_yaml(cfg), parent or ""


def prep(config_yaml: str) -> dict[str, Any]:
    """Check and prepare the data root; publish the derived files next to the raw data."""
    from vega3d.data.prep import run_prep

    cfg = config_from_yaml(config_yaml)
    tracker = _tracker(cfg)
    with tracker.stage_run(_parent_run(tracker, cfg), "prep") as run:
        data_dir = staging.stage_down(cfg.data.root, subpaths=DATA_SUBPATHS)
        report = run_prep(data_dir, cfg.data)
        published = staging.stage_up(data_dir, cfg.data.root, [p for p in PREP_OUTPUTS if (data_dir / p).exists()])
        counts = {f"records_{name}": float(n) for name, n in report.records.items()}
        counts.update({f"scenes_{split}": float(len(names)) for split, names in report.scenes.items()})
        counts["frames_excluded"] = float(sum(len(f) for f in report.excluded_frames.values()))  # invalid frames
        # counts are facts about the data (params), not measurements over time (metrics)
        run.log_params({k: int(v) for k, v in counts.items()})
        run.set_tags({"vega3d.files_published": published})
        run.log_metrics({"seconds": report.seconds})
        run.log_datasets([_data_input(cfg.data.root, data_dir, "preparation")])
    return {"uri": cfg.data.root, "counts": counts}


def needs_offline_features(config_yaml: str) -> bool:
    """Whether training/evaluation read offline features (so the extract step must run)."""
    cfg = config_from_yaml(config_yaml)
    return cfg.generative.backbone != "none" and cfg.generative.mode == "offline"


def extract(config_yaml: str, data_uri: str, shard_index: int = 0, num_shards: int = 1) -> dict[str, Any]:
    """Extract offline generative features of every sampled frame list (of one shard's scenes) into the store."""
    from vega3d.generative.extract import default_store_uri, run_extract

    cfg = config_from_yaml(config_yaml)
    tracker = _tracker(cfg)
    parent = _parent_run(tracker, cfg)
    stage = "extract" if num_shards == 1 else f"extract-{shard_index}"  # one child run per shard
    with tracker.stage_run(parent, stage) as run:
        data_dir = staging.stage_down(data_uri, subpaths=DATA_SUBPATHS)
        local = _local_config(cfg, data_dir)
        store_uri = default_store_uri(cfg)
        summary = run_extract(local, store_uri, shard_index=shard_index, num_shards=num_shards)
        run.log_metrics({"seconds": summary.seconds})
        run.set_tags({"vega3d.feature_id": summary.feature_id, **{f"vega3d.{k}": v for k, v in summary.counts.items()}})
        run.log_datasets([_data_input(data_uri, data_dir, "extraction")])
        from vega3d.data.layout import DataLayout
        from vega3d.generative.extract import shard_scenes
        from vega3d.viewer.features import PICTURE_SCENES, log_extract_pictures

        mine = set(shard_scenes(DataLayout(local.data.root), ("train", "val", "test"), shard_index, num_shards))
        val = [scene for scene in shard_scenes(DataLayout(local.data.root), ["val"]) if scene in mine]
        log_extract_pictures(tracker, parent, local, store_uri, summary.feature_id, val[:PICTURE_SCENES])
    return {"uri": store_uri, "feature_id": summary.feature_id, "counts": summary.counts}


def _data_input(data_uri: str, data_dir: Path, context: str) -> Any:
    """The data root as an MLflow dataset input (``vega3d.mlflow_meta``)."""
    from vega3d.mlflow_meta import data_root_input

    return data_root_input(data_uri, data_dir, DATA_SUBPATHS, context)


def _inputs(cfg: Vega3DConfig, data_uri: str, data_dir: Path, context: str) -> list[Any]:
    """The MLflow dataset inputs of a stage reading the data root and, with offline features, the feature set."""
    from vega3d.mlflow_meta import feature_set_input

    inputs = [_data_input(data_uri, data_dir, context)]
    if cfg.generative.mode == "offline" and cfg.generative.feature_id:
        inputs.append(feature_set_input(cfg.generative.feature_id, cfg.generative.feature_root, context))
    return inputs


def _with_features(cfg: Vega3DConfig, feature_id: str) -> Vega3DConfig:
    """The config reading offline features ``feature_id`` from the store under the storage root."""
    if not feature_id:
        return cfg
    from vega3d.generative.extract import default_store_uri

    generative = cfg.generative.model_copy(
        update={"mode": "offline", "feature_id": feature_id, "feature_root": default_store_uri(cfg)}
    )
    return cfg.model_copy(update={"generative": generative})


def train(config_yaml: str, data_uri: str, feature_id: str) -> dict[str, Any]:
    """Train on this node; returns the final model URI and summary metrics."""
    from vega3d.train.launch import launch_training

    cfg = _with_features(config_from_yaml(config_yaml), feature_id)
    tracker = _tracker(cfg)
    parent = _parent_run(tracker, cfg)
    data_dir = staging.stage_down(data_uri, subpaths=DATA_SUBPATHS)
    summary = launch_training(_local_config(cfg, data_dir), cfg.train.nproc, parent)
    if parent:  # the train child run is opened by the training process (rank 0)
        tracker.log_datasets(tracker.child_runs(parent).get("train"), _inputs(cfg, data_uri, data_dir, "training"))
    return {"uri": summary.model_uri, "metrics": summary.metrics}


def train_multinode(
    config_yaml: str,
    data_uri: str,
    feature_id: str,
    num_nodes: int,
    num_gpus: int,
    accelerator_type: str,
    node_selector: dict[str, str],
    tolerations: list[dict[str, Any]],
    image: str,
    manifest_path: str,
    timeout_s: int,
) -> dict[str, Any]:
    """Train on ``num_nodes`` nodes through a Kubeflow Trainer TrainJob; returns the final model URI.

    The resolved config is published under the run's storage location and every node runs
    ``vega3d train --preset <that URI>`` under torchrun; this step streams node 0's logs and fails unless the
    TrainJob completes.
    """
    from vega3d.train.trainjob import build_trainjob, kubernetes_apis, request_from_step, run_trainjob

    cfg = _with_features(config_from_yaml(config_yaml), feature_id)
    config_uri = storage.join(cfg.train.output_uri, "config.yaml")
    storage.write_text(config_uri, config_to_yaml(cfg))
    tracker = _tracker(cfg)
    parent = _parent_run(tracker, cfg)
    train_args = ["--preset", config_uri, "--num-gpus", str(num_gpus)]
    if parent:
        train_args += ["--parent-run-id", parent]
    request = request_from_step(
        image=image, train_args=train_args, num_nodes=num_nodes, num_gpus=num_gpus,
        accelerator_type=accelerator_type, node_selector=node_selector, tolerations=tolerations,
        run_id=run_key() or config_digest(cfg), timeout_s=timeout_s,
    )
    custom_api, core_api = kubernetes_apis()
    outcome = run_trainjob(custom_api, build_trainjob(request), timeout_s, core_api=core_api,
                           manifest_path=manifest_path)
    return {"uri": storage.join(cfg.train.output_uri, "model"), "trainjob": outcome.name}


def evaluate(config_yaml: str, task: str, data_uri: str, model_uri: str, feature_id: str) -> dict[str, float]:
    """Evaluate one benchmark with the trained model; returns the task's metrics (flat, unprefixed)."""
    from vega3d.evaluation.mlflow_log import log_eval_result
    from vega3d.evaluation.run import evaluate as evaluate_benchmark

    logger.info("evaluate: benchmark %s", task)  # the demo's status line names the step by it
    cfg = _with_features(config_from_yaml(config_yaml), feature_id)
    tracker = _tracker(cfg)
    with tracker.stage_run(_parent_run(tracker, cfg), f"eval-{task}") as run:
        data_dir = staging.stage_down(data_uri, subpaths=DATA_SUBPATHS)
        local = _local_config(cfg, data_dir)
        model_dir = staging.stage_down(model_uri)
        local = local.model_copy(update={"model": local.model.model_copy(update={"checkpoint": str(model_dir)})})
        result = evaluate_benchmark(local, task, strict=False, meteor=True, progress=False)
        log_eval_result(tracker, run.run_id, result)
        run.log_datasets(_inputs(cfg, data_uri, data_dir, "evaluation"))
    return {"task": task, **{k: float(v) for k, v in result.metrics.items()}}


def report(config_yaml: str, model_uri: str, task_metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Benchmark table, plot, viewer and training curves on the parent run, model registration and the champion
    gate (its decision as JSON and as a table in the report)."""
    from vega3d.evaluation.report import format_markdown, plot_benchmarks
    from vega3d.mlflow_meta import gate_markdown, split_counts
    from vega3d.registry import register_and_gate
    from vega3d.viewer.report import log_run_pictures, write_run_pictures

    cfg = config_from_yaml(config_yaml)
    by_task = {m["task"]: {k: v for k, v in m.items() if k != "task"} for m in task_metrics}
    markdown = format_markdown(by_task)
    pictures = write_run_pictures(cfg)
    markdown += pictures.markdown()
    report_uri = storage.join(cfg.eval.output_uri, "report.md")
    tracker = _tracker(cfg, safe=False)
    gate: dict[str, Any] = {"promoted": False, "version": None, "report_uri": report_uri}
    parent = _parent_run(tracker, cfg)
    if parent:
        flat, counts = split_counts(
            {f"{task}/{name}": value for task, metrics in by_task.items() for name, value in metrics.items()}
        )
        tracker.log_metrics(parent, flat)
        tracker.set_tags(parent, counts)
        with tempfile.TemporaryDirectory() as folder:
            plot = Path(folder) / "benchmarks.png"
            plot_benchmarks(by_task, plot)
            tracker.log_artifact(parent, plot, "report")
        log_run_pictures(tracker, parent, pictures)
        gate.update(register_and_gate(tracker, cfg, parent, model_uri, flat, config_digest(cfg)))
        tracker.set_tags(parent, {"vega3d.gate": json.dumps(gate, sort_keys=True)})
        tracker.log_text(parent, json.dumps(gate, indent=2, sort_keys=True), "report/gate.json")
        markdown += "\n" + gate_markdown(gate)
        tracker.log_text(parent, markdown, "report/benchmarks.md")
    storage.write_text(report_uri, markdown)
    return {"markdown": markdown, "gate": gate, "viewer_uri": pictures.viewer_uri}


def finalize(mlflow_uri: str, experiment: str, job_id: str, state: str, error_message: str | None) -> None:
    """Exit handler: FINISHED when the pipeline succeeded, FAILED otherwise (children left RUNNING too)."""
    if not mlflow_uri:
        return
    from vega3d.tracking import Tracker

    tracker = Tracker(mlflow_uri, safe=False)
    parent = tracker.start_pipeline_run(experiment, run_key(job_id), preset="unknown")
    status = "FINISHED" if state == "SUCCEEDED" else "FAILED"
    if status == "FAILED" and error_message:
        tracker.set_tags(parent, {"vega3d.error": error_message[:4000]})
    tracker.set_run_status(parent, status)


def write_artifact_file(path: str, content: dict[str, Any]) -> None:
    """Write a step's artifact file (JSON of its metadata or metrics).

    Kubeflow artifacts here mostly point at URIs under the storage root, but every artifact still gets a
    file: kfp treats an output artifact without one as missing, which would defeat step caching.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(content, indent=2, sort_keys=True))
