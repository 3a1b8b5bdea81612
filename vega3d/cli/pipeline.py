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
    log_dir: Annotated[
        Path | None,
        typer.Option(help="Folder for each step's full log (NN-<step>.log; kfp's own lines in pipeline.log, this "
                     "command's in run.log); the screen shows one line per step. Default: "
                     "<pipeline-root>/../logs/<run id>. With -v, kfp's whole output goes to the screen instead."),
    ] = None,
    cache: CacheOption = None,
    runner: Annotated[
        str, typer.Option(help="subprocess, or docker: every step in the vega3d-cpu image (make images).")
    ] = "subprocess",
    settings: dict | None = None,
) -> None:
    """Run the whole pipeline on this machine through kfp.local (SubprocessRunner, or DockerRunner with
    --runner docker): one line per finished step, then the report and the MLflow links (or the failed step's
    log tail)."""
    import contextlib

    from pipelines.local_run import check_params, new_run_id, run_local
    from pipelines.outcome import failure_text, run_outcome
    from vega3d.errors import PipelineFailed
    from vega3d.logs import current_verbosity, log_to_file

    params = {"preset": preset, **parse_params(param or []), **(settings or {})}
    for name, value in (("overrides", overrides), ("data_uri", data_root), ("storage_root", output),
                        ("mlflow_uri", tracking_uri)):
        if value:
            params[name] = value
    check_params(params)  # a wrong name or a server that is down: two lines, before anything is written
    run_id = new_run_id()
    logs = None if current_verbosity() > 0 else (log_dir or pipeline_root.parent / "logs" / run_id).resolve()
    if logs:
        typer.echo(f"run {run_id}: one line per finished step; each step's full log in {logs}")
    try:
        with log_to_file(logs / "run.log") if logs else contextlib.nullcontext():
            result = run_local(params, pipeline_root, enable_caching=bool(cache), cached_steps=cache or [],
                               run_id=run_id, log_dir=logs, runner=runner)
    except PipelineFailed as failure:
        typer.echo("\n".join(filter(None, (failure_text(failure.logs), run_outcome(params, run_id, False).text()))))
        raise
    typer.echo(run_outcome(params, run_id).text())
    typer.echo(f"run {run_id}: {len(result.executed)} tasks executed; step outputs under {result.run_dir}")


app.command("submit")(submit_command)
