"""``vega3d serve``: the KServe model server of ``vega3d.ask.serve`` on this machine (127.0.0.1 by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vega3d.ask.serve import AskModel, Limits, run_server
from vega3d.cli.ask import CheckpointOption, TrackingOption, engine_config
from vega3d.cli.options import DataRootOption, PresetOption, SetOption


def serve_command(
    checkpoint: CheckpointOption = None,
    preset: PresetOption = "tiny",
    overrides: SetOption = None,
    data_root: DataRootOption = None,
    tracking_uri: TrackingOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind (0.0.0.0 in a pod).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="HTTP port.")] = 8080,
    model_name: Annotated[str, typer.Option("--model-name", help="Model name in the URLs.")] = "vega3d",
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Most requests in one HTTP call.")] = 16,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1024, help="Largest request body.")] = 1 << 20,
    scene_root: Annotated[Path | None, typer.Option(
        "--scene-root", help="Serve only scenes under this folder (default: any path the server can read).")] = None,
    stage_dir: Annotated[Path | None, typer.Option(
        "--stage-dir", help="Where staged scenes go (default: a temporary folder).")] = None,
    print_storage_uri: Annotated[bool, typer.Option(
        "--print-storage-uri", help="Print the storage URI --checkpoint resolves to (models:/ -> its source) and "
                                    "exit; for the InferenceService's STORAGE_URI.")] = False,
) -> None:
    """Serve ask's question / grounding / caption operations over KServe v1 and Open Inference Protocol v2."""
    if print_storage_uri:
        from vega3d.ask.checkpoints import registry_source

        if checkpoint is None:
            raise typer.BadParameter("--print-storage-uri needs --checkpoint")
        typer.echo(registry_source(checkpoint, tracking_uri) if checkpoint.startswith("models:/") else checkpoint)
        return
    cfg = engine_config(preset, overrides, data_root)
    limits = Limits(max_batch=max_batch, max_body_bytes=max_body_bytes, max_boxes=4 * cfg.model.max_proposals,
                    scene_root=scene_root)

    def load_engine():
        from vega3d.ask.engine import AskEngine

        return AskEngine.load(cfg, checkpoint, tracking_uri, stage_dir)

    model = AskModel.build(model_name, load_engine, limits)
    model.load()
    run_server(model, host, port, max_body_bytes)
