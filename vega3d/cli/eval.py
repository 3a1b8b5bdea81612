"""``vega3d eval <task>|all``: predict (resumable, sharded) or take given predictions, score, report, log.

Per task, under ``<output>/<task>/``: what ``vega3d.evaluation.run.evaluate`` writes; ``all`` also writes
``report.md`` (the paper-order table) at the root.

Without ``--predictions`` the model at ``--checkpoint`` is run (``vega3d.evaluation.predictors``) with the
sampling strategy, frame count and offline feature id given, like the original evaluation wrappers.
With ``--predictions`` an existing file (one task) or folder holding ``<task>/predictions.jsonl`` (all) is
scored as is: external predictions can be scored without any model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from vega3d.benchmarks import ALL_TASKS
from vega3d.cli.options import (
    DataRootOption,
    PresetOption,
    SetOption,
    TrackingUriOption,
    check_choice,
    config_from_options,
    hidden_alias,
    task_argument,
    with_settings,
)
from vega3d.data.root import EVAL_FOLDERS, SCORE_FOLDERS
from vega3d.errors import require_data_root
from vega3d.params import to_overrides

logger = logging.getLogger(__name__)

TASK_CHOICES = (*ALL_TASKS, "all")


@with_settings("eval")
def eval_command(
    task: Annotated[str, task_argument(TASK_CHOICES)],
    preset: PresetOption = "tiny",
    overrides: SetOption = None,
    data_root: DataRootOption = None,
    split: Annotated[str | None, typer.Option("--split", help="Split (default: test for SQA3D, val otherwise).")] = None,
    predictions: Annotated[str | None, typer.Option(
        "--predictions", help="Score these predictions instead of running the model: a JSONL file for one task, "
                              "a folder with <task>/predictions.jsonl for 'all'.")] = None,
    checkpoint: Annotated[str | None, typer.Option(
        "--checkpoint", "--run", help="Model to evaluate: a saved run/checkpoint folder (default: model.checkpoint, relative to the data root).")] = None,
    feature_id: Annotated[str | None, typer.Option(
        "--feature-id", help="Offline generative feature id; 'None' computes features online.")] = None,
    output: Annotated[str | None, typer.Option("--output", help="Where predictions and metrics go (default: eval.output_uri).")] = None,
    output_uri: Annotated[str | None, hidden_alias("--output-uri", "--output")] = None,
    num_shards: Annotated[int | None, typer.Option("--num-shards", min=1, help="Shards to split inference into.")] = None,
    shard_index: Annotated[int | None, typer.Option(
        "--shard-index", min=0, help="Run only this shard (one process per GPU); omit to run/resume all and score.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Inference batch size.")] = None,
    max_samples: Annotated[int | None, typer.Option("--max-samples", min=1, help="Evaluate only the first N records per task.")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--theta", help="Multi3DRefer cumulative-probability threshold θ (default: model.multi3drefer_threshold).")] = None,
    strict: Annotated[bool, typer.Option("--strict/--lenient", help="Fail on malformed or missing predictions instead of scoring them as misses.")] = False,
    meteor: Annotated[bool, typer.Option("--meteor/--no-meteor", help="Compute METEOR (starts Java).")] = True,
    mlflow_run_id: Annotated[str | None, typer.Option("--mlflow-run-id", help="Log metrics, breakdown and samples into this MLflow run.")] = None,
    tracking_uri: TrackingUriOption = None,
    settings: dict | None = None,
) -> None:
    """Evaluate one benchmark or all five and print the paper-order table."""
    from vega3d import storage
    from vega3d.evaluation import report
    from vega3d.evaluation.run import evaluate

    check_choice("task", task, TASK_CHOICES)
    if task == "all" and split is not None:
        raise typer.BadParameter("--split applies to one task; 'all' uses each benchmark's evaluation split")
    sets = to_overrides(settings or {}, overrides or [])
    if checkpoint is not None and "://" not in checkpoint and Path(checkpoint).exists():
        checkpoint = str(Path(checkpoint).resolve())  # a folder given here is relative to the working directory
    for key, value in (("data.root", data_root), ("model.checkpoint", checkpoint),
                       ("eval.output_uri", output or output_uri),
                       ("eval.num_shards", num_shards), ("eval.batch_size", batch_size),
                       ("eval.max_samples", max_samples), ("model.multi3drefer_threshold", threshold)):
        if value is not None:
            sets.append(f"{key}={value}")
    if feature_id is not None:
        offline = feature_id not in ("None", "none", "")
        sets += [f"generative.mode={'offline' if offline else 'online'}",
                 f"generative.feature_id={feature_id if offline else 'null'}"]
    cfg = config_from_options(preset, sets)
    # before anything reads from it, so a wrong root is reported as such; scoring needs only the records
    require_data_root(cfg.data.root, SCORE_FOLDERS if predictions is not None else EVAL_FOLDERS)
    if shard_index is not None and shard_index >= cfg.eval.num_shards:
        raise typer.BadParameter(f"--shard-index {shard_index} must be < --num-shards {cfg.eval.num_shards}")

    names = list(cfg.eval.tasks) if task == "all" else [task]
    tracker = None
    if mlflow_run_id:
        from vega3d.tracking import Tracker

        tracker = Tracker(tracking_uri, safe=False)
    ours: dict[str, dict[str, float]] = {}
    for name in names:
        given = None
        if predictions is not None:
            given = storage.join(predictions, name, "predictions.jsonl") if task == "all" else predictions
        result = evaluate(cfg, name, split=split, predictions_uri=given, shard_index=shard_index, strict=strict,
                          meteor=meteor)
        if result is None:
            continue
        ours[name] = result.metrics
        typer.echo(f"{name}: " + ", ".join(f"{k}={v:.2f}" for k, v in result.metrics.items()))
        if tracker is not None:
            from vega3d.evaluation.mlflow_log import log_eval_result

            log_eval_result(tracker, mlflow_run_id, result)
    if not ours:
        return
    report.print_table(ours, name=cfg.preset)
    if task == "all":
        target = storage.join(cfg.eval.output_uri, "report.md")
        storage.write_text(target, report.format_markdown(ours, name=cfg.preset))
        typer.echo(f"report: {target}")
        if not storage.is_remote(cfg.data.root) and (Path(cfg.data.root) / "scannet").is_dir():
            from vega3d.viewer.report import write_eval_viewer

            viewer_uri, _ = write_eval_viewer(cfg, cfg.data.root, list(ours), predictions)
            typer.echo(f"viewer: {viewer_uri}")
