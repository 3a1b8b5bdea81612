"""``vega3d eval <task>|all``: predict (resumable, sharded) or take given predictions, score, report, log.

Per task, under ``<output-uri>/<task>/``: ``shards/*.jsonl`` (inference), ``predictions.jsonl`` (merged),
``metrics.json``, ``breakdown.json`` and ``problems.json`` when predictions were malformed; ``all`` also
writes ``report.md`` (the paper-order table) at the root.

Without ``--predictions`` the model at ``--checkpoint`` is run (``vega3d.evaluation.predictors``) with the
sampling strategy, frame count and offline feature id given, like the original evaluation wrappers.
With ``--predictions`` an existing file (one task) or folder holding ``<task>/predictions.jsonl`` (all) is
scored as is: external predictions can be scored without any model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vega3d.cli_options import PresetOption, SetOption, config_from_options
from vega3d.errors import check_data_root

if TYPE_CHECKING:
    from vega3d.config import Vega3DConfig
    from vega3d.evaluation.tasks import EvalResult

logger = logging.getLogger(__name__)

TASK_CHOICES = ("scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d", "all")


def evaluate_task(
    cfg: Vega3DConfig,
    task: str,
    split: str | None,
    predictions_uri: str | None,
    shard_index: int | None,
    strict: bool,
    meteor: bool,
    progress: bool = True,
) -> EvalResult | None:
    """Predict (unless ``predictions_uri``), then score one task; None when only one shard was run."""
    from vega3d import storage
    from vega3d.evaluation import inference, tasks
    from vega3d.evaluation.predictions import PredictionError, load_predictions

    records = tasks.load_records(cfg.data.root, task, split)
    if cfg.eval.max_samples is not None:
        records = records[: cfg.eval.max_samples]
    task_uri = storage.join(cfg.eval.output_uri, task)
    if predictions_uri is None:
        from vega3d.evaluation.predictors import build_predictor

        predict = build_predictor(cfg, task, split or tasks.DEFAULT_SPLITS[task])
        shards = range(cfg.eval.num_shards) if shard_index is None else [shard_index]
        for index in shards:
            inference.run_inference(records, predict, task_uri, index, cfg.eval.num_shards, cfg.eval.batch_size,
                                    progress=progress)
        if shard_index is not None and cfg.eval.num_shards > 1:
            logger.info("%s: shard %d done; score once every shard has run (same command without --shard-index)",
                        task, shard_index)
            return None
        predictions_uri = inference.merge_shards(task_uri, cfg.eval.num_shards)
    pset = load_predictions(task, predictions_uri, [r["id"] for r in records])
    if pset.problems:
        if strict:
            raise PredictionError(predictions_uri, pset.problems)
        logger.warning("%s: %d malformed prediction(s), scored as misses and listed in %s/problems.json:\n  %s",
                       predictions_uri, len(pset.problems), task_uri,
                       "\n  ".join(str(p) for p in pset.problems[:20]))
    if pset.missing:
        logger.warning("%s: %d record(s) without a prediction are scored as misses (first: %s)",
                       predictions_uri, len(pset.missing), pset.missing[:5])
    settings = tasks.ScoreSettings(multi3drefer_threshold=cfg.model.multi3drefer_threshold,
                                   ground_temperature=cfg.model.ground_temperature,
                                   caption_iou=cfg.eval.caption_iou, meteor=meteor)
    result = tasks.score(task, records, pset, settings)
    tasks.save_result(result, task_uri)
    return result


def eval_command(
    task: Annotated[str, typer.Argument(help=f"Benchmark to evaluate: one of {', '.join(TASK_CHOICES)}.")],
    preset: PresetOption = "tiny",
    overrides: SetOption = None,
    data_root: Annotated[str | None, typer.Option("--data-root", help="Data root (default: data.root).")] = None,
    split: Annotated[str | None, typer.Option("--split", help="Split (default: test for SQA3D, val otherwise).")] = None,
    predictions: Annotated[str | None, typer.Option(
        "--predictions", help="Score these predictions instead of running the model: a JSONL file for one task, "
                              "a folder with <task>/predictions.jsonl for 'all'.")] = None,
    checkpoint: Annotated[str | None, typer.Option(
        "--checkpoint", "--run", help="Model to evaluate: a saved run/checkpoint folder (default: model.checkpoint, relative to the data root).")] = None,
    sampling: Annotated[str | None, typer.Option(
        "--sampling", help="Frame sampling strategy: uniform, max-coverage or mc-ratio95 (default: data.sampling).")] = None,
    frames: Annotated[int | None, typer.Option("--frames", help="Frames per sample (default: data.frames_upbound).")] = None,
    feature_id: Annotated[str | None, typer.Option(
        "--feature-id", help="Offline generative feature id; 'None' computes features online.")] = None,
    output_uri: Annotated[str | None, typer.Option("--output-uri", help="Where predictions and metrics go (default: eval.output_uri).")] = None,
    num_shards: Annotated[int | None, typer.Option("--num-shards", min=1, help="Shards to split inference into.")] = None,
    shard_index: Annotated[int | None, typer.Option(
        "--shard-index", min=0, help="Run only this shard (one process per GPU); omit to run/resume all and score.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Inference batch size.")] = None,
    max_samples: Annotated[int | None, typer.Option("--max-samples", min=1, help="Evaluate only the first N records per task.")] = None,
    threshold: Annotated[float | None, typer.Option(
        "--theta", help="Multi3DRefer cumulative-probability threshold θ (default: model.multi3drefer_threshold).")] = None,
    strict: Annotated[bool, typer.Option("--strict/--lenient", help="Fail on malformed predictions instead of scoring them as misses.")] = False,
    meteor: Annotated[bool, typer.Option("--meteor/--no-meteor", help="Compute METEOR (starts Java).")] = True,
    mlflow_run_id: Annotated[str | None, typer.Option("--mlflow-run-id", help="Log metrics, breakdown and samples into this MLflow run.")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI).")] = None,
) -> None:
    """Evaluate one benchmark or all five and print the paper-order table."""
    from vega3d import storage
    from vega3d.evaluation import report

    if task not in TASK_CHOICES:
        raise typer.BadParameter(f"unknown task {task!r}: choose one of {', '.join(TASK_CHOICES)}")
    if task == "all" and split is not None:
        raise typer.BadParameter("--split applies to one task; 'all' uses each benchmark's evaluation split")
    sets = list(overrides or [])
    if checkpoint is not None and "://" not in checkpoint and Path(checkpoint).exists():
        checkpoint = str(Path(checkpoint).resolve())  # a folder given here is relative to the working directory
    for key, value in (("data.root", data_root), ("model.checkpoint", checkpoint), ("data.sampling", sampling),
                       ("data.frames_upbound", frames), ("eval.output_uri", output_uri),
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
    check_data_root(cfg.data.root, ("processed",) if predictions is not None else ("scannet", "processed"))
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
        result = evaluate_task(cfg, name, split, given, shard_index, strict, meteor)
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
