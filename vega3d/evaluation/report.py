"""The `vega3d eval all` table: our scores beside the published VEGA-3D and Video-3D-LLM rows (SPEC.md 4).

Columns follow the paper: ScanRefer Acc@.25/@.5 | Multi3DRefer F1@.25/@.5 | Scan2Cap CIDEr/BLEU-4 @.5 |
ScanQA CIDEr/EM | SQA3D EM. A task that was not evaluated shows "-".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple


class Column(NamedTuple):
    benchmark: str
    label: str
    task: str
    metric: str


COLUMNS: tuple[Column, ...] = (
    Column("ScanRefer", "Acc@.25", "scanrefer", "acc_iou25"),
    Column("ScanRefer", "Acc@.5", "scanrefer", "acc_iou50"),
    Column("Multi3DRefer", "F1@.25", "multi3drefer", "f1_iou25"),
    Column("Multi3DRefer", "F1@.5", "multi3drefer", "f1_iou50"),
    Column("Scan2Cap", "C@.5", "scan2cap", "cider_iou50"),
    Column("Scan2Cap", "B-4@.5", "scan2cap", "bleu4_iou50"),
    Column("ScanQA", "CIDEr", "scanqa", "cider"),
    Column("ScanQA", "EM", "scanqa", "em"),
    Column("SQA3D", "EM", "sqa3d", "em"),
)

# SPEC.md section 4: uniform sampling, 32 frames.
PUBLISHED: dict[str, tuple[float, ...]] = {
    "VEGA-3D (paper)": (63.2, 56.2, 60.8, 55.1, 83.2, 42.2, 106.3, 30.4, 61.3),
    "Video-3D-LLM (paper)": (58.1, 51.7, 58.0, 52.7, 83.8, 41.3, 102.1, 30.1, 58.6),
}


def table_rows(ours: Mapping[str, Mapping[str, float]], name: str = "ours") -> list[tuple[str, list[float | None]]]:
    """(row name, values in column order) for our metrics by task, then the published rows."""
    values = [ours.get(c.task, {}).get(c.metric) for c in COLUMNS]
    return [(name, values), *((label, list(row)) for label, row in PUBLISHED.items())]


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_markdown(ours: Mapping[str, Mapping[str, float]], name: str = "ours") -> str:
    """A markdown table with a header row naming benchmark and metric."""
    header = "| method | " + " | ".join(f"{c.benchmark} {c.label}" for c in COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(COLUMNS)
    lines = [header, rule]
    for label, values in table_rows(ours, name):
        lines.append(f"| {label} | " + " | ".join(_cell(v) for v in values) + " |")
    return "\n".join(lines) + "\n"


def print_table(ours: Mapping[str, Mapping[str, float]], name: str = "ours", console=None) -> None:
    """Print the table with rich (our row first, bold)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="VEGA-3D evaluation (percent)")
    table.add_column("method")
    for column in COLUMNS:
        table.add_column(f"{column.benchmark}\n{column.label}", justify="right")
    for index, (label, values) in enumerate(table_rows(ours, name)):
        table.add_row(label, *(_cell(v) for v in values), style="bold" if index == 0 else None)
    (console or Console()).print(table)


def bar_chart(series: Mapping[str, Mapping[str, float]], metrics: list[str], path: str | Path) -> None:
    """Grouped bar chart (PNG): ``metrics`` on the x axis, one bar per label of ``series`` (NaN drawn as 0)."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from vega3d.storage import atomic_local_path

    positions = np.arange(len(metrics))
    width = 0.8 / max(len(series), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(metrics)), 4.0))
    for index, (label, values) in enumerate(series.items()):
        heights = [0.0 if math.isnan(values[m]) else values[m] for m in metrics]
        axes.bar(positions + index * width, heights, width, label=label)
    axes.set_xticks(positions + width * (len(series) - 1) / 2, metrics, rotation=30, ha="right")
    axes.set_ylabel("score")
    axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_local_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    plt.close(figure)


def plot_benchmarks(ours: Mapping[str, Mapping[str, float]], path: str | Path) -> None:
    """This run's paper-table columns as a bar chart (the chart ``vega3d compare`` draws across runs)."""
    names = [f"{c.task}/{c.metric}" for c in COLUMNS]
    values = {f"{c.task}/{c.metric}": ours.get(c.task, {}).get(c.metric, float("nan")) for c in COLUMNS}
    bar_chart({"this run": values}, names, path)
