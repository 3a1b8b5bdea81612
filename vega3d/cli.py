"""The ``vega3d`` command line. Sub-commands live beside the code they run; heavy imports stay inside them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from vega3d import errors, logs
from vega3d.compare import compare_command
from vega3d.data.commands import app as data_app
from vega3d.evaluation.commands import eval_command
from vega3d.generative.commands import extract_command
from vega3d.pipeline_commands import app as pipeline_app
from vega3d.testing.demo import demo_command
from vega3d.train.commands import train_command


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


@app.callback()
def _root(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log (-vv: debug); tracebacks.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only.")] = False,
) -> None:
    """Log levels for every command (the flags may also follow the command: `vega3d train -v`)."""
    logs.setup_logging(-1 if quiet else verbose)


app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.command("eval")(eval_command)
app.command("demo")(demo_command)
app.command("extract")(extract_command)
app.command("compare")(compare_command)
app.command("train")(train_command)


def main() -> None:
    """Console-script entry point (``-v``/``-q`` may follow the sub-command)."""
    app(args=logs.hoist_verbosity_flags(sys.argv[1:]), prog_name="vega3d")


if __name__ == "__main__":
    main()
