"""Run the pipeline on this machine with kfp's own local runner (``SubprocessRunner(use_venv=False)``).

The steps run as subprocesses of this Python, which already holds the package, exactly as the components
run in their images in the cluster. kfp-kubernetes settings (GPUs, node pools, secrets) are ignored
locally; storage and MLflow are whatever the parameters point at (the demo starts SeaweedFS and MLflow).
"""

import contextlib
import inspect
import logging
import os
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipelines import vega3d_pipeline
from pipelines.runners import check_runner_params, make_runner, step_images
from pipelines.step_logs import ANSI, PlainText, StepLogs
from pipelines.vega3d_pipeline import build_pipeline
from vega3d.errors import PipelineFailed
from vega3d.logs import is_terminal, silence_known_warnings


@dataclass(frozen=True)
class LocalRun:
    """What one local run did."""

    run_id: str
    run_dir: Path  # kfp.local's folder of this run under the pipeline root
    executed: list[str]  # tasks that ran (a task served from the cache leaves no executor output)


def new_run_id() -> str:
    """A fresh local run id, ``local-<hex>`` (it plays the Kubeflow run id: the MLflow key of the run)."""
    return f"local-{uuid.uuid4().hex[:12]}"


def executed_tasks(run_dir: Path) -> list[str]:
    """Names of the tasks that executed in a kfp.local run folder (ParallelFor iterations repeat the name)."""
    return sorted(path.parent.name for path in run_dir.rglob("executor_output.json"))


def check_params(params: dict) -> None:
    """Fail in seconds, before any step starts, on an unknown parameter name, a preset or override the config
    refuses (what setup-run would resolve), a given data root that is no data root (``vega3d.data.root``) or an
    MLflow server that is down."""
    from vega3d.config import load_config
    from vega3d.errors import check_names, check_server, require_data_root
    from vega3d.params import pipeline_overrides

    signature = inspect.signature(build_pipeline(local=True).pipeline_func).parameters
    known = list(signature)
    check_names(list(params), known, "pipeline parameter",
                f"use one of: {', '.join(known)}")
    load_config(str(params.get("preset", signature["preset"].default)), pipeline_overrides(params))
    if params.get("data_uri"):
        require_data_root(str(params["data_uri"]))
    uri = str(params.get("mlflow_uri") or "")
    if uri.startswith(("http://", "https://")):
        check_server(uri.rstrip("/") + "/health", "MLflow tracking server", "start it or fix -p mlflow_uri=...")


def run_local(
    params: dict,
    pipeline_root: str | Path,
    enable_caching: bool = False,
    cached_steps: Iterable[str] = (),
    run_id: str | None = None,
    log_dir: str | Path | None = None,
    runner: str = "subprocess",
) -> LocalRun:
    """Run the pipeline once; raises ``PipelineFailed`` (a RuntimeError) when a step fails (after the exit
    handler ran).

    ``run_id`` plays the Kubeflow run id (the MLflow key of the run, default ``local-<hex>``); a ``run_name``
    in ``params`` only names the MLflow parent run, as in the cluster. With ``log_dir``, each step's output goes
    to its own file there and stdout gets one line per step (``pipelines.step_logs``) and a failure names the
    failed steps' files (``PipelineFailed.logs``); without it, kfp.local prints everything (its colours only
    on a terminal). ``runner``: ``subprocess`` or ``docker`` (every step in the CPU image, see
    ``pipelines.runners``).
    """
    from kfp import local

    check_params(params)
    run_id = run_id or new_run_id()
    pipeline_root = Path(pipeline_root).resolve()
    check_runner_params(runner, params, pipeline_root)  # docker: steps see only the pipeline root
    pipeline_root.mkdir(parents=True, exist_ok=True)
    # Steps find the MLflow parent run by this key (in the cluster it comes from the pod's run-id label).
    os.environ["VEGA3D_PIPELINE_RUN_ID"] = run_id
    local.init(
        runner=make_runner(runner, pipeline_root),
        pipeline_root=str(pipeline_root),
        enable_caching=enable_caching,
        raise_on_error=True,
    )
    silence_known_warnings()  # e.g. kfp's warning about custom images (ours hold exactly this package)
    before = set(pipeline_root.iterdir())
    step_logs = StepLogs(log_dir, sys.stdout) if log_dir is not None else None
    stdout = step_logs or (None if is_terminal(sys.stdout) else PlainText(sys.stdout))
    root = logging.getLogger()
    # kfp.local swaps the root logger's handlers around each task; with tasks in parallel threads, one task can
    # "restore" another's handler (bound to the stdout of the run), so the caller's handlers are put back here.
    handlers, level = root.handlers[:], root.level
    try:
        with (contextlib.redirect_stdout(stdout) if stdout else contextlib.nullcontext(),
              step_images(runner, vega3d_pipeline)):  # docker: every step in the CPU image built here
            build_pipeline(cached_steps, local=True, given=params)(**params)
    except RuntimeError as error:
        failed = []
        if step_logs:
            step_logs.close()
            failed = step_logs.failed()
        steps = ", ".join(f"{step.task} {step.detail}".strip() for step in failed) or ANSI.sub("", str(error))
        logs = [step.path for step in failed] or ([step_logs.pipeline_log_path] if step_logs else [])
        where = ", ".join(str(path) for path in logs) or "kfp's output above"
        raise PipelineFailed(f"pipeline run {run_id} failed: {steps}", f"see the step's log: {where}",
                             logs) from error
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        if step_logs:
            step_logs.close()
    new_dirs = sorted(set(pipeline_root.iterdir()) - before)
    run_dir = new_dirs[-1] if new_dirs else pipeline_root
    return LocalRun(run_id, run_dir, executed_tasks(run_dir) if new_dirs else [])
