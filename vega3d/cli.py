"""The ``vega3d`` command line. Sub-commands live beside the code they run; heavy imports stay inside them."""

from __future__ import annotations

import typer

from vega3d.compare import compare_command
from vega3d.data.commands import app as data_app
from vega3d.evaluation.commands import eval_command
from vega3d.generative.commands import extract_command
from vega3d.pipeline_commands import app as pipeline_app
from vega3d.plan import plan_command
from vega3d.testing.demo import demo_command
from vega3d.train.commands import train_command

app = typer.Typer(
    name="vega3d",
    help="VEGA-3D: data prep, feature extraction, training, evaluation and the Kubeflow pipeline.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
app.command("eval")(eval_command)
app.command("demo")(demo_command)
app.command("extract")(extract_command)
app.command("compare")(compare_command)
app.command("train")(train_command)
app.command("plan")(plan_command)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
