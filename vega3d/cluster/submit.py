"""Submit the compiled pipeline to a Kubeflow Pipelines endpoint, wait for it, and read the champion gate.

``kfp`` and ``mlflow`` are imported inside the functions that need them; the clients are injectable so the
logic is tested without a cluster. Authentication, in order: a bearer token (argument or ``KFP_TOKEN``,
e.g. from a CI secret or ``gcloud auth print-access-token``); inside a cluster, the pod's projected Kubeflow
Pipelines service-account token (multi-user KFP); otherwise none (standalone KFP reached directly or through
``kubectl port-forward``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Where Kubeflow Pipelines projects its service-account token in pipeline and notebook pods.
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
FINISHED_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELING")


class SubmitError(RuntimeError):
    """The run could not be submitted, did not succeed, or its gate result cannot be found."""


@dataclass(frozen=True)
class SubmittedRun:
    """A run created on the endpoint: its id, the URL of its page in the Kubeflow UI, its experiment."""

    run_id: str
    url: str
    experiment: str


def make_client(
    host: str | None = None,
    token: str | None = None,
    namespace: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    factory: Callable[..., Any] | None = None,
) -> Any:
    """A ``kfp.Client`` for ``host`` (default ``KFP_HOST``; none inside a cluster) with the auth above."""
    environ = os.environ if environ is None else environ
    host = host or environ.get("KFP_HOST") or None
    token = token or environ.get("KFP_TOKEN") or None
    kwargs: dict[str, Any] = {"host": host}
    if namespace:
        kwargs["namespace"] = namespace
    if host:
        kwargs["ui_host"] = host
    if token:
        kwargs["existing_token"] = token
    elif "KUBERNETES_SERVICE_HOST" in environ:
        path = environ.get("KF_PIPELINES_SA_TOKEN_PATH", SA_TOKEN_PATH)
        if Path(path).exists():
            from kfp.client import ServiceAccountTokenVolumeCredentials

            kwargs["credentials"] = ServiceAccountTokenVolumeCredentials(path)
    if factory is None:
        import kfp

        factory = kfp.Client
    return factory(**kwargs)


def run_url(host: str | None, run_id: str) -> str:
    """The run's page: ``<host>/#/runs/details/<id>`` (relative ``/pipeline/...`` inside the cluster)."""
    prefix = (host or "/pipeline").rstrip("/")
    if host and not prefix.startswith(("http://", "https://")):
        prefix = "http://" + prefix
    return f"{prefix}/#/runs/details/{run_id}"


def submit_pipeline(
    client: Any,
    package_path: str | Path,
    params: Mapping[str, Any],
    *,
    experiment: str,
    run_name: str,
    host: str | None = None,
    namespace: str | None = None,
    service_account: str | None = None,
    enable_caching: bool | None = None,
) -> SubmittedRun:
    """Create a run of the compiled pipeline YAML in ``experiment`` (created if missing); return its URL."""
    package = Path(package_path)
    if not package.is_file():
        raise SubmitError(f"{package}: no compiled pipeline; write it with `vega3d pipeline compile -o {package}`")
    result = client.create_run_from_pipeline_package(
        str(package),
        arguments=dict(params),
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace,
        enable_caching=enable_caching,
        service_account=service_account,
    )
    submitted = SubmittedRun(result.run_id, run_url(host, result.run_id), experiment)
    logger.info("submitted run %s (%s) in experiment %s: %s", run_name, submitted.run_id, experiment, submitted.url)
    return submitted


def wait_for_run(client: Any, run_id: str, timeout_s: int, poll_s: int = 30) -> str:
    """Wait until the run finishes; return ``SUCCEEDED`` or raise :class:`SubmitError` with its final state."""
    try:
        run = client.wait_for_run_completion(run_id, timeout=timeout_s, sleep_duration=poll_s)
    except TimeoutError as error:
        raise SubmitError(f"run {run_id} did not finish within {timeout_s} s") from error
    state = str(getattr(run, "state", "") or "").upper()
    if state != "SUCCEEDED":
        raise SubmitError(f"run {run_id} ended in state {state or 'UNKNOWN'}; see its page in the Kubeflow UI")
    return state


def gate_result(mlflow_client: Any, model_name: str, pipeline_run_id: str) -> dict[str, Any]:
    """The champion gate of one pipeline run, read back from the MLflow registry.

    The report step registers the model version (alias ``candidate``) on a run tagged with the pipeline run
    id and moves ``champion`` to it only when it wins. Returns ``{"version", "promoted", "champion"}``.
    """
    from mlflow.exceptions import MlflowException

    from vega3d.tracking import CHAMPION, PIPELINE_RUN_ID_TAG

    ours = []
    for version in mlflow_client.search_model_versions(f"name='{model_name}'"):
        if not version.run_id:
            continue
        tags = mlflow_client.get_run(version.run_id).data.tags
        if tags.get(PIPELINE_RUN_ID_TAG) == pipeline_run_id:
            ours.append(version)
    if not ours:
        raise SubmitError(
            f"no version of registered model {model_name!r} comes from pipeline run {pipeline_run_id}: "
            "did the report step run (run_eval=true)?"
        )
    version = str(max(ours, key=lambda v: int(v.version)).version)
    try:
        champion = str(mlflow_client.get_model_version_by_alias(model_name, CHAMPION).version)
    except MlflowException as error:  # only "no such alias" means no champion; anything else is a real failure
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        logger.debug("no %s alias on %s: %s", CHAMPION, model_name, error)
        champion = None
    return {"version": version, "promoted": champion == version, "champion": champion}
