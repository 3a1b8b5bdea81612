"""Problem reports for people and for machines: a table on a terminal, whole lines elsewhere, or JSON.

A rich table folds long paths across lines; that is fine on a terminal but breaks ``grep`` and copy-paste in
a log or a CI job. Away from a terminal each problem is one line with its whole path; ``--format json``
prints a JSON list of ``{"path", "problem", "fix"}`` objects.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, is_dataclass
from enum import Enum
from typing import IO, Any


class ReportFormat(str, Enum):
    """How a problem report is printed (``--format``)."""

    auto = "auto"  # table on a terminal, text elsewhere
    table = "table"
    text = "text"
    json = "json"


def _as_dict(problem: Any) -> dict[str, str]:
    row = asdict(problem) if is_dataclass(problem) else dict(problem)
    return {key: str(row.get(key, "")) for key in ("path", "problem", "fix")}


def render_problems(problems: Sequence[Any], fmt: ReportFormat = ReportFormat.auto, stream: IO[str] | None = None) -> None:
    """Print ``problems`` (objects with ``path``, ``problem`` and ``fix``) in ``fmt`` on ``stream`` (stdout)."""
    from vega3d.logs import is_terminal

    stream = stream or sys.stdout
    rows = [_as_dict(problem) for problem in problems]
    if fmt == ReportFormat.auto:
        fmt = ReportFormat.table if is_terminal(stream) else ReportFormat.text
    if fmt == ReportFormat.json:
        stream.write(json.dumps(rows, indent=2) + "\n")
    elif fmt == ReportFormat.text:
        stream.write(f"{len(rows)} problem(s):\n")
        stream.writelines(f"{row['path']}: {row['problem']} (fix: {row['fix']})\n" for row in rows)
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{len(rows)} problem(s)", show_lines=True, expand=True)
        table.add_column("file", overflow="fold", style="cyan")
        table.add_column("problem", overflow="fold", style="red")
        table.add_column("fix", overflow="fold", style="green")
        for row in rows:
            table.add_row(row["path"], row["problem"], row["fix"])
        Console(file=stream, width=160).print(table)
