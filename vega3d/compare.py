"""``vega3d compare``: the runs of an MLflow experiment side by side, grouped by backbone and fusion.

Reads the top-level (pipeline parent) runs of an experiment, takes the chosen metrics and the chosen
config params (flattened names such as ``generative.backbone``), and renders a Markdown table and a grouped
bar chart (PNG).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

DEFAULT_GROUPS = ("generative.backbone", "model.fusion")


@dataclass(frozen=True)
class RunSummary:
    """One run's identity, grouping params and metric values (NaN where the run lacks the metric)."""

    run_id: str
    name: str
    status: str
    group: tuple[str, ...]
    metrics: dict[str, float]


def fetch_runs(
    tracking_uri: str, experiment: str, metrics: list[str], by: list[str], include_children: bool = False
) -> list[RunSummary]:
    """Runs of ``experiment`` (parents only unless ``include_children``), newest first."""
    from mlflow.tracking import MlflowClient

    from vega3d.errors import UserError, check_server

    if tracking_uri.startswith(("http://", "https://")):  # MLflow's own client retries for minutes
        check_server(tracking_uri.rstrip("/") + "/health", "MLflow tracking server",
                     "start it or fix --tracking-uri / MLFLOW_TRACKING_URI")
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments(max_results=200))
        raise UserError(f"MLflow experiment {experiment!r} not found at {tracking_uri}",
                        f"pass --experiment with one of: {', '.join(names) or '(none yet)'}")
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=1000)
    summaries = []
    for run in runs:
        if not include_children and "mlflow.parentRunId" in run.data.tags:
            continue
        summaries.append(
            RunSummary(
                run_id=run.info.run_id,
                name=run.info.run_name or run.info.run_id[:8],
                status=run.info.status,
                group=tuple(str(run.data.params.get(key, "-")) for key in by),
                metrics={name: float(run.data.metrics.get(name, math.nan)) for name in metrics},
            )
        )
    return summaries


def _cell(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def comparison_table(runs: list[RunSummary], metrics: list[str], by: list[str]) -> str:
    """Markdown table: one row per run, sorted by group, grouping params then metrics."""
    header = ["run", *by, "status", *metrics]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in sorted(runs, key=lambda r: (r.group, r.name)):
        cells = [run.name, *run.group, run.status, *(_cell(run.metrics[m]) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_plot(runs: list[RunSummary], metrics: list[str], path: str | Path) -> None:
    """Grouped bar chart: metrics on the x axis, one bar per run labelled with its group."""
    from vega3d.evaluation.report import bar_chart

    bar_chart({"/".join(run.group) + f" ({run.name})": run.metrics for run in runs}, metrics, path)


def compare_command(
    experiment: Annotated[str, typer.Option(help="MLflow experiment whose runs are compared.")] = "vega3d",
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI).")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="Metric to compare (repeat); default: the paper table.")
    ] = None,
    by: Annotated[
        list[str] | None, typer.Option("--by", help="Config param to group by (repeat).")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write a grouped bar chart (PNG) here.")] = None,
    include_children: Annotated[bool, typer.Option(help="Also list the stages' child runs.")] = False,
) -> None:
    """Compare the runs of an MLflow experiment: a table (and a PNG plot) of metrics by backbone and fusion."""
    import os

    from vega3d.evaluation.report import COLUMNS

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise typer.BadParameter("give --tracking-uri or set MLFLOW_TRACKING_URI")
    metrics = metric or [f"{c.task}/{c.metric}" for c in COLUMNS]
    groups = by or list(DEFAULT_GROUPS)
    from mlflow.exceptions import MlflowException

    try:
        runs = fetch_runs(uri, experiment, metrics, groups, include_children)
    except (MlflowException, OSError) as error:
        typer.echo(f"cannot read runs from MLflow at {uri}: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(comparison_table(runs, metrics, groups))
    if plot is not None:
        comparison_plot(runs, metrics, plot)
        typer.echo(f"plot written to {plot}")
