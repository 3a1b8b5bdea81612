"""The ``vega3d`` command line: typer commands only, one module per command group in this package.

Commands are thin: they parse options (shared ones in ``vega3d.cli.options``, settings generated from
``vega3d.params``) and call the library; heavy imports (torch, kfp, mlflow) stay inside the command functions so
``vega3d --help`` stays fast. To add a command or a group, write it in its own module and register it below
(one line each).
"""

from __future__ import annotations

from typing import Annotated

import typer

from vega3d.cli.ask import ask_command
from vega3d.cli.data import app as data_app
from vega3d.cli.eval import eval_command
from vega3d.cli.extract import extract_command
from vega3d.cli.pipeline import app as pipeline_app
from vega3d.cli.serve import serve_command
from vega3d.cli.train import train_command
from vega3d.cli.view import view_command, visualize_app
from vega3d.compare import compare_command
from vega3d.testing.demo import demo_command

app = typer.Typer(
    name="vega3d",
    help="VEGA-3D: data prep, feature extraction, training, evaluation and the Kubeflow pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"vega3d {version('vega3d')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
) -> None:
    """VEGA-3D: data prep, feature extraction, training, evaluation and the Kubeflow pipeline."""


# Command groups and commands (register new ones here).
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.command("eval")(eval_command)
app.command("demo")(demo_command)
app.command("extract")(extract_command)
app.command("compare")(compare_command)
app.command("train")(train_command)
app.command("ask")(ask_command)
app.command("serve")(serve_command)
app.command("view")(view_command)
app.add_typer(visualize_app, name="visualize")


def main() -> None:
    """Console-script entry point."""
    app()

