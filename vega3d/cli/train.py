"""``vega3d train``: DeepSpeed training on this machine (``--num-gpus``) or as one rank of a cluster's torchrun."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from vega3d.cli.options import (
    DataRootOption,
    PresetOption,
    SetOption,
    TrackingUriOption,
    config_from_options,
    with_settings,
)
from vega3d.errors import require_data_root
from vega3d.params import to_overrides

logger = logging.getLogger(__name__)


@with_settings("train")
def train_command(
    preset: PresetOption = "tiny",
    overrides: SetOption = None,
    data_root: DataRootOption = None,
    output: Annotated[
        str | None,
        typer.Option("--output", help="Checkpoints and final model: local path or s3:// (train.output_uri)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume/--no-resume", help="Resume from the latest complete checkpoint under the output "
                     "(--no-resume deletes the output's checkpoints first)."),
    ] = True,
    tracking_uri: TrackingUriOption = None,
    parent_run_id: Annotated[
        str | None, typer.Option("--parent-run-id", help="MLflow parent run to attach the train run to.")
    ] = None,
    settings: dict | None = None,
) -> None:
    """Train VEGA-3D per the preset; prints the final model URI and summary metrics as JSON.

    ``--num-gpus`` is the processes on this machine (torchrun --standalone), ignored inside an existing
    torchrun (RANK/WORLD_SIZE set).
    """
    extra = to_overrides(settings or {}, overrides or [])
    for key, value in (("data.root", data_root), ("train.output_uri", output), ("tracking.uri", tracking_uri)):
        if value:
            extra.append(f"{key}={value}")
    cfg = config_from_options(preset, extra).with_paths_under_root()
    require_data_root(cfg.data.root)  # before the checkpoints under it: a wrong root is reported as such
    from vega3d.train.launch import exit_rank, inside_torchrun, launch_training

    if not resume and not inside_torchrun():
        from vega3d import storage

        storage.remove(storage.join(cfg.train.output_uri, "checkpoints"), recursive=True)
        logger.info("--no-resume: removed %s/checkpoints", cfg.train.output_uri)
    summary = launch_training(cfg, cfg.train.nproc, parent_run_id)
    typer.echo(json.dumps({"model_uri": summary.model_uri, "metrics": summary.metrics}))
    if inside_torchrun():  # a rank of a (cluster) torchrun: see exit_rank
        exit_rank(0)
