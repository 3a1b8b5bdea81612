"""The evaluation API: predict one benchmark with a model (or take given predictions), score it, save it.

``evaluate(cfg, "scanqa")`` is what ``vega3d eval`` and the pipeline's evaluate stage both call. Under
``<eval.output_uri>/<task>/``: ``shards/*.jsonl`` (inference), ``predictions.jsonl`` (merged), ``metrics.json``,
``breakdown.json`` and ``problems.json`` when predictions were malformed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vega3d.config import Vega3DConfig
    from vega3d.evaluation.tasks import EvalResult

logger = logging.getLogger(__name__)


def evaluate(
    cfg: Vega3DConfig,
    task: str,
    *,
    split: str | None = None,
    predictions_uri: str | None = None,
    shard_index: int | None = None,
    strict: bool = False,
    meteor: bool = True,
    progress: bool = True,
) -> EvalResult | None:
    """Predict with ``cfg.model`` (unless ``predictions_uri`` is given), then score one task and save the result.

    ``split`` defaults to the task's evaluation split; ``shard_index`` runs one inference shard only (returns
    None: score once every shard has run); ``strict`` fails on malformed or missing predictions instead of scoring them
    as misses; ``meteor`` computes METEOR (starts Java).
    """
    from vega3d import storage
    from vega3d.data.root import EVAL_FOLDERS, SCORE_FOLDERS
    from vega3d.evaluation import inference, tasks
    from vega3d.evaluation.predictions import PredictionError, load_predictions, strict_problems
    from vega3d.preflight import preflight

    # fail fast, before any prediction; scoring given predictions needs only the prepared records
    preflight([cfg.eval.output_uri], cfg.data.root, data_folders=SCORE_FOLDERS if predictions_uri else EVAL_FOLDERS)
    records = tasks.load_records(cfg.data.root, task, split)
    if cfg.eval.max_samples is not None:
        records = records[: cfg.eval.max_samples]
    task_uri = storage.join(cfg.eval.output_uri, task)
    if predictions_uri is None:
        from vega3d.evaluation.predictors import build_predictor

        predict = build_predictor(cfg, task, split or tasks.DEFAULT_SPLITS[task])
        predict.check_lengths(records)  # model.max_length, before any prediction
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
    if strict and strict_problems(pset):
        raise PredictionError(predictions_uri, strict_problems(pset))
    if pset.problems:
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
