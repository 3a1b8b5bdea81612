"""The model registry step: register a trained model's version and run the champion gate on it.

The gate itself (``Tracker.promote_if_better``: ``champion`` moves only when the candidate is no worse on every
gate metric and better on one) and registration by URI live in ``vega3d.tracking``; this module decides what
is registered and compared for a pipeline run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vega3d.mlflow_meta import gate_record

if TYPE_CHECKING:
    from vega3d.config import Vega3DConfig
    from vega3d.tracking import Tracker


def register_and_gate(
    tracker: Tracker, cfg: Vega3DConfig, run_id: str, model_uri: str, metrics: Mapping[str, float], digest: str
) -> dict[str, Any]:
    """Register ``model_uri`` as a version of ``tracking.registered_model`` (alias ``candidate``) on ``run_id``,
    whose ``metrics`` the gate compares on ``tracking.gate_metrics``; returns the decision as JSON-able data
    (``vega3d.mlflow_meta.gate_record``)."""
    version = tracker.register_model(cfg.tracking.registered_model, model_uri, run_id=run_id,
                                     tags={"preset": cfg.preset, "config_digest": digest})
    metric_names = [m for m in cfg.tracking.gate_metrics if m in metrics]
    decision = tracker.promote_if_better(cfg.tracking.registered_model, version, metric_names)
    return gate_record(decision, version, metric_names)
