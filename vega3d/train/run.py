"""One training process: its MLflow glue (the ``train`` stage run, system metrics, model registration) around
the Trainer built by ``vega3d.train.factory``. ``vega3d.train.launch`` starts these processes."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vega3d.config import Vega3DConfig
from vega3d.train.factory import build_training
from vega3d.train.trainer import TrainResult

logger = logging.getLogger(__name__)


@dataclass
class MlflowTrainTracker:
    """:class:`TrainTracker` on a ``vega3d.tracking`` stage run; registers the final model by URI.

    ``registered_model`` None: no registration (inside a pipeline the report step registers the model with
    the benchmark metrics its champion gate compares).
    """

    stage: Any  # vega3d.tracking.StageRun
    registered_model: str | None

    def log_params(self, config: Vega3DConfig) -> None:
        self.stage.log_params(config)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.stage.log_metrics(metrics, step=step)

    def log_model(self, model_uri: str) -> None:
        self.stage.set_tags({"vega3d.model_uri": model_uri})
        if self.registered_model:
            self.stage.tracker.register_model(self.registered_model, model_uri, run_id=self.stage.run_id)


def train_in_process(cfg: Vega3DConfig, parent_run_id: str | None = None) -> TrainResult:
    """Train as this process's rank (``vega3d.train.launch.launch_training`` starts the ranks); returns the URI and the step history."""
    from vega3d.tracking import Tracker

    tracker = Tracker(cfg.tracking.uri, safe=True)
    standalone = parent_run_id is None
    if standalone and tracker.enabled:
        parent_run_id = tracker.start_pipeline_run(
            cfg.tracking.experiment, f"train-{os.getpid()}-{int(time.time())}", cfg.preset, run_name="train"
        )
    with tracker.stage_run(parent_run_id, "train") as stage, system_metrics(stage.run_id, cfg.tracking.uri):
        registered = cfg.tracking.registered_model if standalone else None
        bridge = MlflowTrainTracker(stage, registered) if stage.run_id else None
        result = build_training(cfg, bridge).train()
        if bridge is not None:
            summary = result.summary_metrics()
            steps = summary.pop("train/steps", None)  # a count: a tag, not a metric
            stage.log_metrics(summary, step=result.history[-1].step if result.history else 0)
            if steps is not None:
                stage.set_tags({"vega3d.train_steps": int(steps)})
    return result


@contextlib.contextmanager
def system_metrics(run_id: str | None, tracking_uri: str | None) -> Iterator[None]:
    """MLflow's system metrics (CPU, memory, disk, network, GPU: ``system/...``) on ``run_id`` while training;
    sampled every 10 s (``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL``). Nothing when ``run_id`` is None."""
    monitor = None
    if run_id is not None:
        try:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            monitor = SystemMetricsMonitor(run_id, tracking_uri=tracking_uri)
            monitor.start()
        except Exception as error:  # noqa: BLE001 - monitoring must never stop training
            logger.warning("MLflow system metrics are off: %s", error)
            monitor = None
    try:
        yield
    finally:
        if monitor is not None:
            monitor.finish()
            if getattr(monitor, "_logging_step", 1) == 0:  # the run was shorter than one sampling interval
                _publish_last_sample(monitor)


def _publish_last_sample(monitor: Any) -> None:
    """Log one system-metrics sample now, so a short run still has its ``system/...`` metrics."""
    try:
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
    except Exception as error:  # noqa: BLE001 - monitoring must never fail training
        logger.warning("could not log the last system-metrics sample: %s", error)
