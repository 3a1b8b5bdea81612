"""``vega3d pipeline compile|run|submit``: the Kubeflow pipeline from the command line (kfp imported lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vega3d.cli.options import (
    DataRootOption,
    PresetOption,
    SetOption,
    TrackingUriOption,
    parse_params,
    with_settings,
)
from vega3d.cli.submit import submit_command

app = typer.Typer(help="Compile the Kubeflow pipeline, run it on this machine, or submit it.", no_args_is_help=True)

CacheOption = Annotated[
    list[str] | None,
    typer.Option("--cache", help="Step that may come from the cache (repeat): prep, extract, train, evaluate, report."),
]
ParamOption = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Pipeline parameter name=value (repeat).")
]


@app.command("compile")
def compile_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the pipeline IR YAML.")] = Path(
        "pipelines/vega3d_pipeline.yaml"
    ),
    preset: PresetOption = "tiny",
    overrides: SetOption = None,
    cache: CacheOption = None,
    gpu: Annotated[
        bool | None,
        typer.Option("--gpu/--no-gpu", help="Request GPUs for extract, train and evaluate (default: by preset: "
                     "tiny requests none, the paper presets do)."),
    ] = None,
) -> None:
    """Write the pipeline IR YAML that users upload in the Kubeflow UI.

    ``--preset`` and ``--set`` become the defaults of the ``preset`` and ``overrides`` parameters, and the
    steps' resource requests follow the preset.
    """
    import os

    from kfp import compiler

    from pipelines.placement import Placement
    from pipelines.vega3d_pipeline import build_pipeline
    from vega3d.storage import atomic_local_path

    pipeline = build_pipeline(cache or [], Placement.for_preset(preset, gpu), preset=preset, overrides=overrides or [])
    with atomic_local_path(output) as tmp:
        compiler.Compiler().compile(pipeline, f"{tmp}.yaml")  # kfp wants the suffix
        os.replace(f"{tmp}.yaml", tmp)
    typer.echo(f"wrote {output}")


@app.command("run")
@with_settings("pipeline")
def run_command(
    preset: PresetOption = "tiny",
    overrides: SetOption = None,
    data_root: DataRootOption = None,
    output: Annotated[
        str | None, typer.Option("--output", help="Storage root of the run's outputs (storage_root parameter).")
    ] = None,
    tracking_uri: TrackingUriOption = None,
    param: ParamOption = None,
    pipeline_root: Annotated[
        Path, typer.Option(help="Local folder for kfp's step outputs (kfp.local cannot use s3:// here).")
    ] = Path(".demo/kfp"),
    cache: CacheOption = None,
    runner: Annotated[
        str, typer.Option(help="subprocess, or docker: every step in the vega3d-cpu image (make images).")
    ] = "subprocess",
    settings: dict | None = None,
) -> None:
    """Run the whole pipeline on this machine through kfp.local (SubprocessRunner, or DockerRunner with
    --runner docker)."""
    from pipelines.local_run import run_local

    params = {"preset": preset, **parse_params(param or []), **(settings or {})}
    for name, value in (("overrides", overrides), ("data_uri", data_root), ("storage_root", output),
                        ("mlflow_uri", tracking_uri)):
        if value:
            params[name] = value
    result = run_local(params, pipeline_root, enable_caching=bool(cache), cached_steps=cache or [], runner=runner)
    typer.echo(f"run {result.run_id}: {len(result.executed)} tasks executed ({', '.join(result.executed)}); "
               f"step outputs under {result.run_dir}")


app.command("submit")(submit_command)
