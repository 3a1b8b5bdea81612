"""Run the pipeline on this machine with kfp's own local runner (``SubprocessRunner(use_venv=False)``).

The steps run as subprocesses of this Python, which already holds the package, exactly as the components
run in their images in the cluster. kfp-kubernetes settings (GPUs, node pools, secrets) are ignored
locally; storage and MLflow are whatever the parameters point at (the demo starts SeaweedFS and MLflow).
"""

import logging
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipelines.vega3d_pipeline import build_pipeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalRun:
    """What one local run did."""

    run_id: str
    pipeline_root: Path
    executed: list[str]  # task names that ran (not served from the cache), in order
    cache_hits: list[str]


class _TaskLog(logging.Handler):
    """Collects kfp.local's task lines: which tasks executed and which came from the cache."""

    _cache_hit = re.compile(r"Task ([\w-]+) cache hit")

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.executed: list[str] = []
        self.cache_hits: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = re.sub(r"\x1b\[[0-9;]*m", "", record.getMessage())
        if match := re.search(r"Executing task '([\w-]+)'", message):
            self.executed.append(match.group(1))
        elif match := self._cache_hit.search(message):
            self.cache_hits.append(match.group(1))


def run_local(
    params: dict,
    pipeline_root: str | Path,
    enable_caching: bool = False,
    cached_steps: Iterable[str] = (),
    run_id: str | None = None,
) -> LocalRun:
    """Run the pipeline once; raises RuntimeError when the pipeline fails (after its exit handler ran)."""
    from kfp import local

    run_id = run_id or f"local-{uuid.uuid4().hex[:12]}"
    pipeline_root = Path(pipeline_root).resolve()
    pipeline_root.mkdir(parents=True, exist_ok=True)
    # Steps find the MLflow parent run by this key (in the cluster it comes from the pod's run-id label).
    os.environ["VEGA3D_PIPELINE_RUN_ID"] = run_id
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        enable_caching=enable_caching,
        raise_on_error=True,
    )
    collector = _TaskLog()
    kfp_logger = logging.getLogger()
    kfp_logger.addHandler(collector)
    try:
        build_pipeline(cached_steps, local=True)(**{**params, "run_id": run_id})
    except RuntimeError as error:
        raise RuntimeError(f"pipeline run {run_id} failed: {error}") from error
    finally:
        kfp_logger.removeHandler(collector)
    return LocalRun(run_id, pipeline_root, collector.executed, collector.cache_hits)
