"""The report step's pictures: the evaluation viewer and the training curves of one pipeline run.

Both land under the run's evaluation output, beside ``report.md``:
``<eval.output_uri>/viewer.html`` and ``<eval.output_uri>/training_curves.png``; the report step also logs
them to the MLflow parent run (``report/viewer.html``, ``report/training_curves.png``) and hands the viewer to
Kubeflow as an HTML artifact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vega3d import staging, storage

logger = logging.getLogger(__name__)

VIEWER_FILE = "viewer.html"
CURVES_FILE = "training_curves.png"
# What the viewer reads from the data root: records, point clouds, ground-truth boxes (ScanQA's objects).
VIEWER_DATA = ["processed", "scannet/pcd_with_global_alignment", "metadata/scannet_val_gt_box.json",
               "metadata/scannet_test_gt_box.json"]


@dataclass
class RunPictures:
    """Where the run's pictures were written (None: not made) and the viewer's record counts."""

    viewer_uri: str | None = None
    curves_uri: str | None = None
    records: dict[str, int] = field(default_factory=dict)
    incorrect: dict[str, int] = field(default_factory=dict)

    def markdown(self) -> str:
        """A Markdown summary: records and incorrect ones per task, and where the pictures are."""
        lines = ["", "## Records", "", "| task | records | incorrect |", "|---|---:|---:|"]
        lines += [f"| {task} | {n} | {self.incorrect.get(task, 0)} |" for task, n in self.records.items()]
        lines += ["", f"Viewer: `{self.viewer_uri}` (MLflow parent run: `report/{VIEWER_FILE}`)"]
        if self.curves_uri:
            lines.append(f"Training curves: `{self.curves_uri}` (MLflow parent run: `report/{CURVES_FILE}`)")
        return "\n".join(lines) + "\n"


def write_eval_viewer(cfg, data_dir: str | Path, tasks: list[str], predictions_uri: str | None = None
                      ) -> tuple[str, Any]:
    """Write the viewer of an evaluation (``tasks``' ``<task>/predictions.jsonl`` under ``predictions_uri``,
    default ``cfg.eval.output_uri``; the scenes of the local data root ``data_dir``) to
    ``<eval.output_uri>/viewer.html``; returns its URI and summary."""
    from vega3d.evaluation.tasks import ScoreSettings
    from vega3d.viewer.html import write_viewer

    settings = ScoreSettings(multi3drefer_threshold=cfg.model.multi3drefer_threshold,
                             ground_temperature=cfg.model.ground_temperature, caption_iou=cfg.eval.caption_iou,
                             meteor=False)
    target = storage.join(cfg.eval.output_uri, VIEWER_FILE)
    summary = write_viewer(data_dir, predictions_uri or cfg.eval.output_uri, target, tasks, settings,
                           title=f"vega3d {cfg.preset}: {cfg.eval.output_uri}", max_samples=cfg.eval.max_samples)
    return target, summary


def write_run_pictures(cfg) -> RunPictures:
    """Write the viewer of ``cfg.eval.output_uri`` and the curves of ``cfg.train.output_uri`` beside the report.

    The viewer needs predictions of at least one task; the curves need ``train_history.json`` (a missing one
    costs a warning, not the report).
    """
    from vega3d.train.trainer import HISTORY_FILE
    from vega3d.viewer.curves import curves_png

    pictures = RunPictures()
    data_dir = staging.stage_down(cfg.data.root, subpaths=VIEWER_DATA)
    target, summary = write_eval_viewer(cfg, data_dir, list(cfg.eval.tasks))
    pictures.viewer_uri, pictures.records, pictures.incorrect = target, summary.records, summary.incorrect
    history_uri = storage.join(cfg.train.output_uri, HISTORY_FILE)
    if storage.exists(history_uri):
        pictures.curves_uri = storage.join(cfg.eval.output_uri, CURVES_FILE)
        storage.write_bytes(pictures.curves_uri, curves_png(storage.read_json(history_uri), f"training {cfg.preset}"))
    else:
        logger.warning("%s: no training history, so no training curves in the report", history_uri)
    return pictures


def log_run_pictures(tracker, run_id: str | None, pictures: RunPictures) -> None:
    """Log the viewer and the curves to an MLflow run under ``report/`` (the files exactly as written)."""
    import tempfile
    from pathlib import Path

    if run_id is None or not tracker.enabled:
        return
    with tempfile.TemporaryDirectory() as folder:
        for uri, name in ((pictures.viewer_uri, VIEWER_FILE), (pictures.curves_uri, CURVES_FILE)):
            if uri:
                local = Path(folder) / name
                local.write_bytes(storage.read_bytes(uri))
                tracker.log_artifact(run_id, local, "report")
