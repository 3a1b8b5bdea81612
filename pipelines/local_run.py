"""Run the pipeline on this machine with kfp's own local runner (``SubprocessRunner(use_venv=False)``).

The steps run as subprocesses of this Python, which already holds the package, exactly as the components
run in their images in the cluster. kfp-kubernetes settings (GPUs, node pools, secrets) are ignored
locally; storage and MLflow are whatever the parameters point at (the demo starts SeaweedFS and MLflow).
"""

import os
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipelines import vega3d_pipeline
from pipelines.runners import check_params, make_runner, step_images
from pipelines.vega3d_pipeline import build_pipeline


@dataclass(frozen=True)
class LocalRun:
    """What one local run did."""

    run_id: str
    run_dir: Path  # kfp.local's folder of this run under the pipeline root
    executed: list[str]  # tasks that ran (a task served from the cache leaves no executor output)


def executed_tasks(run_dir: Path) -> list[str]:
    """Names of the tasks that executed in a kfp.local run folder (ParallelFor iterations repeat the name)."""
    return sorted(path.parent.name for path in run_dir.rglob("executor_output.json"))


def run_local(
    params: dict,
    pipeline_root: str | Path,
    enable_caching: bool = False,
    cached_steps: Iterable[str] = (),
    run_id: str | None = None,
    runner: str = "subprocess",
) -> LocalRun:
    """Run the pipeline once; raises RuntimeError when the pipeline fails (after its exit handler ran).

    ``runner``: ``subprocess`` or ``docker`` (every step in the CPU image, see ``pipelines.runners``).
    """
    from kfp import local

    run_id = run_id or f"local-{uuid.uuid4().hex[:12]}"
    pipeline_root = Path(pipeline_root).resolve()
    check_params(runner, params, pipeline_root)  # docker: steps see only the pipeline root
    pipeline_root.mkdir(parents=True, exist_ok=True)
    # Steps find the MLflow parent run by this key (in the cluster it comes from the pod's run-id label).
    os.environ["VEGA3D_PIPELINE_RUN_ID"] = run_id
    local.init(
        runner=make_runner(runner, pipeline_root),
        pipeline_root=str(pipeline_root),
        enable_caching=enable_caching,
        raise_on_error=True,
    )
    # Our images hold exactly this package, which is what runs here: kfp's warning about custom images is noise.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    before = set(pipeline_root.iterdir())
    try:
        with step_images(runner, vega3d_pipeline):  # docker: every step in the CPU image built here
            build_pipeline(cached_steps, local=True)(**{**params, "run_id": run_id})
    except RuntimeError as error:
        raise RuntimeError(f"pipeline run {run_id} failed: {error}") from error
    new_dirs = sorted(set(pipeline_root.iterdir()) - before)
    run_dir = new_dirs[-1] if new_dirs else pipeline_root
    return LocalRun(run_id, run_dir, executed_tasks(run_dir) if new_dirs else [])
