"""The ``vega3d`` command line: typer commands only, one module per command group in this package.

Commands are thin: they parse options (shared ones in ``vega3d.cli.options``, settings generated from
``vega3d.params``) and call the library; heavy imports (torch, kfp, mlflow) stay inside the command functions so
``vega3d --help`` stays fast. To add a command or a group, write it in its own module and register it below
(one line each).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from vega3d import errors, logs
from vega3d.cli.ask import ask_command
from vega3d.cli.data import app as data_app
from vega3d.cli.eval import eval_command
from vega3d.cli.extract import extract_command
from vega3d.cli.pipeline import app as pipeline_app
from vega3d.cli.plan import plan_command
from vega3d.cli.serve import serve_command
from vega3d.cli.train import train_command
from vega3d.cli.view import view_command, visualize_app
from vega3d.compare import compare_command
from vega3d.testing.demo import demo_command


class _Vega3DGroup(TyperGroup):
    """The root command group: user mistakes in any sub-command print two lines and exit 2 (vega3d.errors)."""

    def invoke(self, ctx):  # noqa: ANN001, ANN201 - click's signature
        return errors.handled(lambda: super(_Vega3DGroup, self).invoke(ctx), lambda: logs.current_verbosity() > 0)


app = typer.Typer(
    cls=_Vega3DGroup,
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
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log (-vv: debug); tracebacks.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
) -> None:
    """VEGA-3D: data prep, feature extraction, training, evaluation and the Kubeflow pipeline (``-v``/``-q`` may
    also follow the command: `vega3d train -v`)."""
    logs.setup_logging(-1 if quiet else verbose)


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
app.command("plan")(plan_command)


def main() -> None:
    """Console-script entry point (``-v``/``-q`` may follow the sub-command)."""
    app(args=logs.hoist_verbosity_flags(sys.argv[1:]), prog_name="vega3d")

