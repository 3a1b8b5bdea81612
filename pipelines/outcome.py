"""What a local pipeline run shows at its end (``vega3d pipeline run``, ``vega3d demo``).

A finished run: the report (the benchmark table beside the paper's rows, the champion gate, the records
summary) and, when tracking is on, the MLflow links. A failed run: the last lines of each failed step's log
(the traceback is there), and the links. ``-v`` users see kfp's whole output instead of the tail.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.step_logs import FINISHED, SEPARATOR
from vega3d import storage
from vega3d.params import RUN_PARAMS, pipeline_overrides

TAIL_LINES = 20
_DEFAULTS = {param.name: param.default for param in RUN_PARAMS}


@dataclass(frozen=True)
class RunOutcome:
    """The end of a run as shown to the operator; empty fields are left out of ``text``."""

    report_markdown: str = ""  # report.md of the run (empty: no evaluation, or the run failed)
    mlflow_url: str = ""  # the MLflow UI (empty: tracking off or not an http(s) server)
    parent_run_url: str = ""  # the run's parent run in that UI (empty: none was made)

    def text(self) -> str:
        """The report after a blank line, then ``MLflow: <ui>  (this run: <parent run>)``."""
        parts = ["\n" + self.report_markdown] if self.report_markdown else []
        if self.mlflow_url:
            parts.append(f"MLflow: {self.mlflow_url}" + (f"  (this run: {self.parent_run_url})"
                                                         if self.parent_run_url else ""))
        return "\n".join(parts)


def _param(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    return _DEFAULTS[name] if value is None else value


def tracking_url(params: Mapping[str, Any]) -> str:
    """The http(s) MLflow server the run's steps track to (``mlflow_uri``, else ``$MLFLOW_TRACKING_URI``)."""
    import os

    uri = str(_param(params, "mlflow_uri") or os.environ.get("MLFLOW_TRACKING_URI", ""))
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else ""


def parent_run_url(mlflow_url: str, experiment: str, run_key: str) -> str:
    """The MLflow UI link of the parent run of pipeline run ``run_key`` ("" when it has none)."""
    from vega3d.mlflow_meta import ui_url
    from vega3d.tracking import Tracker

    tracker = Tracker(mlflow_url)
    run_id = tracker.find_pipeline_run(experiment, run_key)
    experiment_id = tracker.experiment_id(experiment) if run_id else None
    return ui_url(mlflow_url, f"experiments/{experiment_id}/runs/{run_id}") if experiment_id else ""


def run_outcome(params: Mapping[str, Any], run_key: str, succeeded: bool = True) -> RunOutcome:
    """The outcome of the local run ``run_key`` with pipeline parameters ``params`` (pipeline defaults for
    the ones left out): its report when it succeeded and evaluated, and its MLflow links."""
    from vega3d.mlflow_meta import ui_url
    from vega3d.runs import resolve_run_config

    markdown = ""
    evaluated = str(_param(params, "run_eval")).lower() not in ("false", "0", "no")
    if succeeded and evaluated:
        cfg = resolve_run_config(str(_param(params, "preset")), pipeline_overrides(params),
                                 str(_param(params, "storage_root")), str(_param(params, "data_uri")))
        report = storage.join(cfg.eval.output_uri, "report.md")
        markdown = storage.read_text(report) if storage.exists(report) else ""
    url = tracking_url(params)
    if not url:
        return RunOutcome(markdown)
    return RunOutcome(markdown, ui_url(url), parent_run_url(url, str(_param(params, "experiment")), run_key))


def log_tail(path: Path, count: int = TAIL_LINES) -> list[str]:
    """The last ``count`` lines of a step's log, without kfp's closing lines (status, separator, blanks) and
    kfp's indentation of the step's own output."""
    lines = path.read_text(errors="replace").splitlines()
    while lines and (not lines[-1].strip() or SEPARATOR.match(lines[-1].strip()) or FINISHED.search(lines[-1])):
        lines.pop()
    return [line.removeprefix("    ") for line in lines[-count:]]


def failure_text(logs: Sequence[Path], count: int = TAIL_LINES) -> str:
    """For each failed step's log: a blank line, ``last N lines of <log>:`` and those lines, indented."""
    parts = []
    for path in logs:
        tail = log_tail(path, count)
        parts.append(f"\nlast {len(tail)} lines of {path}:\n" + "\n".join(f"    {line}" for line in tail))
    return "\n".join(parts)
