"""``vega3d pipeline compile|run``: the Kubeflow pipeline from the command line (kfp imported lazily)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vega3d.cluster.commands import submit_command

app = typer.Typer(help="Compile the Kubeflow pipeline or run it on this machine.", no_args_is_help=True)

CacheOption = Annotated[
    list[str] | None,
    typer.Option("--cache", help="Step that may come from the cache (repeat): prep, extract, train, evaluate, report."),
]


@app.command("compile")
def compile_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the pipeline IR YAML.")] = Path(
        "pipelines/vega3d_pipeline.yaml"
    ),
    cache: CacheOption = None,
) -> None:
    """Write the pipeline IR YAML that users upload in the Kubeflow UI."""
    import os

    from kfp import compiler

    from pipelines.vega3d_pipeline import build_pipeline
    from vega3d.storage import atomic_local_path

    with atomic_local_path(output) as tmp:
        compiler.Compiler().compile(build_pipeline(cache or []), f"{tmp}.yaml")  # kfp wants the suffix
        os.replace(f"{tmp}.yaml", tmp)
    typer.echo(f"wrote {output}")


def parse_params(items: list[str]) -> dict:
    """``name=value`` pipeline parameters; values are parsed as JSON when they parse, else kept as text."""
    params = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r} must look like name=value (e.g. max_steps=20)")
        name, raw = item.split("=", 1)
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    return params


@app.command("run")
def run_command(
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Pipeline parameter name=value (repeat).")
    ] = None,
    pipeline_root: Annotated[
        Path, typer.Option(help="Local folder for kfp's step outputs (kfp.local cannot use s3:// here).")
    ] = Path(".demo/kfp"),
    cache: CacheOption = None,
    runner: Annotated[str, typer.Option(help="subprocess, or docker: every step in the vega3d-cpu image (make images).")] = "subprocess",
) -> None:
    """Run the whole pipeline on this machine through kfp.local (SubprocessRunner, or DockerRunner with --runner docker)."""
    from pipelines.local_run import run_local

    result = run_local(parse_params(param or []), pipeline_root, enable_caching=bool(cache), cached_steps=cache or [], runner=runner)
    typer.echo(f"run {result.run_id}: {len(result.executed)} tasks executed ({', '.join(result.executed)}); "
               f"step outputs under {result.run_dir}")


app.command("submit")(submit_command)
