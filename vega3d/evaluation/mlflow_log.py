"""Log one evaluation into a given MLflow run through ``vega3d.tracking.Tracker``.

Metrics go in as ``<task>/<metric>`` and ``<task>/<type>/<metric>`` (the breakdown), the breakdown also as
``eval/<task>/breakdown.json``, and the first ``sample_size`` per-record rows as the table
``eval/<task>/samples.json`` (``MlflowClient.log_table``: shown in the run's evaluation view).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vega3d.evaluation.tasks import EvalResult
    from vega3d.tracking import Tracker


def eval_metrics(result: EvalResult) -> dict[str, float]:
    """Prefixed flat metrics of one task: overall ``task/metric`` and breakdown ``task/type/metric``."""
    flat = {f"{result.task}/{key}": value for key, value in result.metrics.items()}
    for kind, values in result.breakdown.items():
        flat.update({f"{result.task}/{kind}/{key}": value for key, value in values.items()})
    return flat


def log_eval_result(tracker: Tracker, run_id: str | None, result: EvalResult, sample_size: int = 50) -> None:
    """Log metrics, breakdown and a sample table of one task into ``run_id`` (no-op when tracking is off)."""
    if run_id is None or not tracker.enabled:
        return
    from vega3d.mlflow_meta import split_counts

    metrics, counts = split_counts(eval_metrics(result))
    tracker.log_metrics(run_id, metrics)
    tracker.set_tags(run_id, counts)
    tracker.log_text(run_id, json.dumps(result.breakdown, indent=2), f"eval/{result.task}/breakdown.json")
    rows = result.rows[:sample_size]
    if rows:
        columns = {key: [row.get(key) for row in rows] for key in rows[0]}
        tracker.client.log_table(run_id, data=columns, artifact_file=f"eval/{result.task}/samples.json")
