"""One place for MLflow: a parent run per pipeline run, a child run per stage, the model registry gate.

Layout in MLflow::

    experiment <tracking.experiment>
      run "<pipeline run>"            tags vega3d.pipeline_run_id, vega3d.preset, vega3d.data_version,
      |                                    mlflow.source.git.commit; the benchmark metrics and the report
      +-- run "prep"                  tags mlflow.parentRunId, vega3d.stage=prep; params, metrics, artifacts
      +-- run "train" ...

Pipeline steps run in separate processes (or pods): the parent run id travels between them as a plain string,
so every call here takes explicit run ids (``MlflowClient``), never MLflow's process-global active run.
Starting a pipeline run or a stage run twice (step retries, re-runs) reuses the run found by its tags.

Only global rank 0 (``RANK`` unset or 0) talks to the server; other ranks get a disabled ``Tracker`` whose
methods do nothing. With ``safe=True`` (training) a tracking server that cannot be reached, or that fails a
call, costs a warning and disables tracking for the rest of the process instead of stopping the work;
``safe=False`` (the report step and its champion gate) raises.

Model registry: versions are registered by URI (the checkpoint folder in the storage root) with the alias
``candidate``; ``promote_if_better`` moves ``champion`` only when the candidate beats it (see there).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

PIPELINE_RUN_ID_TAG = "vega3d.pipeline_run_id"
PRESET_TAG = "vega3d.preset"
DATA_VERSION_TAG = "vega3d.data_version"
STAGE_TAG = "vega3d.stage"
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests child runs under it
GIT_COMMIT_TAG = "mlflow.source.git.commit"  # MLflow's own: shown on the run page
CANDIDATE = "candidate"
CHAMPION = "champion"
# MLflow >= 2.8 accepts 6000 characters per param value, older servers (still common on clusters) only 500.
PARAM_VALUE_LIMIT = 500
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
# Safe mode (training) bounds MLflow's HTTP retries: its defaults (7 retries, backoff 2) stall every failing
# call about 4 minutes when a server answers /health but fails requests. Values already set are kept.
SAFE_HTTP_SETTINGS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                      "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
SERVER_FAILURES_BEFORE_DISABLE = 2  # consecutive calls failed by the server (5xx, transport) in safe mode

R = TypeVar("R")


class TrackingError(RuntimeError):
    """The tracking server is unreachable or refused a call (raised only when ``safe=False``)."""


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 (``RANK`` unset counts as rank 0)."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def git_sha(repo: str | Path | None = None) -> str:
    """The commit being run: ``VEGA3D_GIT_SHA`` (set in images and by CI), else ``git rev-parse HEAD``."""
    if os.environ.get("VEGA3D_GIT_SHA"):
        return os.environ["VEGA3D_GIT_SHA"]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo or Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def metric_key(name: str) -> str:
    """A valid MLflow metric/param key: characters other than ``[A-Za-z0-9_-. /]`` become ``_``.

    >>> metric_key("scanrefer/acc@0.25")
    'scanrefer/acc_0.25'
    """
    return re.sub(r"[^\w\-. /]", "_", name)


def flatten_params(config: Any, limit: int = PARAM_VALUE_LIMIT) -> dict[str, str]:
    """Dotted key -> string value for a pydantic config or a nested mapping; long values are cut to ``limit``.

    Lists and dicts below the leaves are written as JSON; ``None`` as ``"None"`` (MLflow's own rendering).
    """
    if hasattr(config, "to_flat_dict"):
        tree: Mapping[str, Any] = config.to_flat_dict()
    elif hasattr(config, "model_dump"):
        tree = config.model_dump(mode="json")
    else:
        tree = config
    flat: dict[str, str] = {}

    def visit(node: Mapping[str, Any], prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, Mapping):
                visit(value, name + ".")
                continue
            text = json.dumps(value) if isinstance(value, (list, tuple)) else str(value)
            flat[metric_key(name)] = text if len(text) <= limit else text[: limit - 3] + "..."

    visit(tree, "")
    return flat


@dataclass
class GateDecision:
    """Outcome of ``promote_if_better``: whether ``champion`` moved, and the numbers it was decided on."""

    promoted: bool
    candidate_version: str
    previous_champion: str | None
    reason: str
    # metric -> (candidate value, champion value or None)
    comparison: dict[str, tuple[float, float | None]] = field(default_factory=dict)


def _tracking_call(default: Any = None) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorator for Tracker methods: no-op when disabled; in safe mode, failures become a warning."""

    def wrap(method: Callable[..., R]) -> Callable[..., R]:
        @functools.wraps(method)
        def call(self: Tracker, *args: Any, **kwargs: Any) -> R:
            if not self.enabled:
                return default
            failures = self._server_failures
            try:
                result = method(self, *args, **kwargs)
            except Exception as error:
                if not self.safe or not _is_tracking_failure(error):
                    raise
                self._degrade(f"{method.__name__} failed: {error}", _is_server_failure(error))
                return default
            if self._server_failures == failures:  # a clean call (no nested call failed) ends a failure streak
                self._server_failures = 0
            return result

        return call

    return wrap


def _is_tracking_failure(error: Exception) -> bool:
    """Errors of the tracking server or the way to it (not bugs in the caller's arguments)."""
    import requests
    from mlflow.exceptions import MlflowException

    return isinstance(error, (MlflowException, requests.RequestException, ConnectionError, TimeoutError))


def _is_server_failure(error: Exception) -> bool:
    """A failure of the server or the way to it (5xx, transport), not a refusal of the request (4xx)."""
    from mlflow.exceptions import MlflowException

    return not isinstance(error, MlflowException) or error.get_http_status_code() >= 500


class Tracker:
    """MLflow access for one process (explicit run ids; see the module docstring).

    Args:
        tracking_uri: server URI; default ``MLFLOW_TRACKING_URI``. None/empty disables tracking.
        safe: warn and carry on (disabling tracking) when the server is unreachable or fails a call.
        probe_timeout: seconds to wait for ``/health`` of an http(s) server before giving up on it.
    """

    def __init__(self, tracking_uri: str | None = None, safe: bool = True, probe_timeout: float = 5.0) -> None:
        self.uri = tracking_uri if tracking_uri is not None else os.environ.get("MLFLOW_TRACKING_URI", "")
        self.safe = safe
        self.probe_timeout = probe_timeout
        self.enabled = bool(self.uri) and is_rank_zero()
        self._client = None
        self._server_failures = 0
        if self.enabled and not self._server_answers():
            message = f"MLflow tracking server {self.uri} does not answer /health"
            if not safe:
                raise TrackingError(message + "; start it or fix MLFLOW_TRACKING_URI")
            logger.warning("MLflow: %s; tracking is disabled for this process, work goes on", message)
            self.enabled = False

    # ------------------------------------------------------------------------------------------- plumbing

    @property
    def client(self):
        """The ``MlflowClient`` bound to this tracker's URI (created on first use)."""
        if self._client is None:
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            if self.safe:
                for name, value in SAFE_HTTP_SETTINGS.items():
                    os.environ.setdefault(name, value)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _server_answers(self) -> bool:
        if not self.uri.startswith(("http://", "https://")):
            return True
        try:
            with urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=self.probe_timeout) as reply:  # noqa: S310
                return 200 <= reply.status < 300
        except urllib.error.HTTPError as error:  # it answers; 401/403 behind an auth proxy still means "up"
            return error.code < 500
        except (urllib.error.URLError, OSError):
            return False

    def _degrade(self, message: str, server_failure: bool = True) -> None:
        self._server_failures += int(server_failure)
        if self._server_failures < SERVER_FAILURES_BEFORE_DISABLE and self._server_answers():
            logger.warning("MLflow: %s; continuing", message)
            return
        logger.warning("MLflow: %s; tracking is disabled for the rest of this process, work goes on", message)
        self.enabled = False

    # ---------------------------------------------------------------------------------------------- runs

    @_tracking_call()
    def experiment_id(self, name: str) -> str:
        """Id of the experiment ``name``, created when missing; tagged as a model-training experiment."""
        from vega3d.mlflow_meta import EXPERIMENT_KIND_TAG, TRAINING_KIND

        experiment = self.client.get_experiment_by_name(name)
        if experiment is None:
            return self.client.create_experiment(name, tags={EXPERIMENT_KIND_TAG: TRAINING_KIND})
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # made elsewhere (the UI, an older vega3d)
            self.client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)
        return experiment.experiment_id

    @_tracking_call()
    def start_pipeline_run(
        self,
        experiment: str,
        pipeline_run_id: str,
        preset: str,
        git_commit: str | None = None,
        data_version: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str | None:
        """The parent run of one pipeline run: found by ``pipeline_run_id`` or created. Returns its run id.

        ``tags`` may carry ``mlflow.note.content`` (the run's description, ``vega3d.mlflow_meta``).
        """
        experiment_id = self.experiment_id(experiment)
        if experiment_id is None:  # disabled while looking it up
            return None
        found = self._find_runs(experiment_id, {PIPELINE_RUN_ID_TAG: pipeline_run_id}, top_level=True)
        if found:
            return found[0].info.run_id
        all_tags = {
            PIPELINE_RUN_ID_TAG: pipeline_run_id,
            PRESET_TAG: preset,
            GIT_COMMIT_TAG: git_commit or git_sha(),
            DATA_VERSION_TAG: data_version or "unknown",
            **(tags or {}),
        }
        run = self.client.create_run(experiment_id, tags=all_tags, run_name=run_name or pipeline_run_id)
        logger.info("MLflow parent run %s for pipeline run %s", run.info.run_id, pipeline_run_id)
        return run.info.run_id

    @_tracking_call()
    def find_pipeline_run(self, experiment: str, pipeline_run_id: str) -> str | None:
        """The parent run of one pipeline run, or None when there is none (nothing is created)."""
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            return None
        runs = self._find_runs(found.experiment_id, {PIPELINE_RUN_ID_TAG: pipeline_run_id}, top_level=True)
        return runs[0].info.run_id if runs else None

    @contextlib.contextmanager
    def stage_run(self, parent_run_id: str | None, stage: str) -> Iterator[StageRun]:
        """A child run of ``parent_run_id`` for one stage, FINISHED on success and FAILED on an exception.

        Yields a ``StageRun`` (a no-op one when tracking is off or there is no parent). A stage started again
        under the same parent (a retried step) continues in the same child run.
        """
        run_id = self._open_stage(parent_run_id, stage) if parent_run_id else None
        stage_run = StageRun(self, run_id, stage)
        try:
            yield stage_run
        except BaseException as error:
            self.set_run_status(run_id, "FAILED" if isinstance(error, Exception) else "KILLED", close_children=False)
            raise
        self.set_run_status(run_id, "FINISHED", close_children=False)

    @_tracking_call()
    def _open_stage(self, parent_run_id: str, stage: str) -> str:
        parent = self.client.get_run(parent_run_id)
        experiment_id = parent.info.experiment_id
        found = self._find_runs(experiment_id, {PARENT_RUN_TAG: parent_run_id, STAGE_TAG: stage})
        if found:
            run_id = found[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            return run_id
        from vega3d.mlflow_meta import DESCRIPTION_TAG, stage_description

        tags = {PARENT_RUN_TAG: parent_run_id, STAGE_TAG: stage, DESCRIPTION_TAG: stage_description(stage)}
        for inherited in (PIPELINE_RUN_ID_TAG, PRESET_TAG, GIT_COMMIT_TAG, DATA_VERSION_TAG):
            if inherited in parent.data.tags:
                tags[inherited] = parent.data.tags[inherited]
        return self.client.create_run(experiment_id, tags=tags, run_name=stage).info.run_id

    def _find_runs(self, experiment_id: str, tags: Mapping[str, str], top_level: bool = False) -> list:
        clauses = [f"tags.`{key}` = '{_quote(value)}'" for key, value in tags.items()]
        runs = self.client.search_runs([experiment_id], filter_string=" and ".join(clauses), max_results=50)
        if top_level:
            runs = [run for run in runs if PARENT_RUN_TAG not in run.data.tags]
        return sorted(runs, key=lambda run: run.info.start_time or 0)

    @_tracking_call()
    def child_runs(self, parent_run_id: str) -> dict[str, str]:
        """Stage name -> run id of the children of a parent run."""
        parent = self.client.get_run(parent_run_id)
        runs = self._find_runs(parent.info.experiment_id, {PARENT_RUN_TAG: parent_run_id})
        return {run.data.tags.get(STAGE_TAG, run.info.run_name): run.info.run_id for run in runs}

    @_tracking_call()
    def set_run_status(self, run_id: str | None, status: str, close_children: bool = True) -> None:
        """End a run as FINISHED, FAILED or KILLED (the pipeline's exit handler calls this on the parent).

        With ``close_children``, children still RUNNING (their step died without reporting) become FAILED.
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"run status {status!r}: use one of {', '.join(RUN_STATUSES)}")
        if run_id is None:
            return
        if close_children:
            for child_id in self.child_runs(run_id).values():
                if self.client.get_run(child_id).info.status == "RUNNING":
                    self.client.set_terminated(child_id, status="FAILED")
        self.client.set_terminated(run_id, status=status)

    # ---------------------------------------------------------------------------------------- logging

    @_tracking_call()
    def log_params_flat(self, run_id: str | None, config: Any) -> None:
        """Log a (nested) config as dotted params, values cut to 500 characters, in batches of 100."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

        if run_id is None:
            return
        params = [Param(key, value) for key, value in flatten_params(config).items()]
        for start in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=params[start : start + MAX_PARAMS_TAGS_PER_BATCH])

    @_tracking_call()
    def log_metrics(self, run_id: str | None, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log numeric metrics (keys made valid with ``metric_key``; None values skipped) in batches."""
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        if run_id is None:
            return
        now = int(time.time() * 1000)
        entries = [
            Metric(metric_key(key), float(value), now, step or 0) for key, value in metrics.items() if value is not None
        ]
        for start in range(0, len(entries), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=entries[start : start + MAX_METRICS_PER_BATCH])

    @_tracking_call()
    def set_tags(self, run_id: str | None, tags: Mapping[str, Any]) -> None:
        """Set tags on a run."""
        from mlflow.entities import RunTag

        if run_id is None:
            return
        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])

    @_tracking_call()
    def log_artifact(self, run_id: str | None, local_path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a folder to the run's artifacts (through the server to its S3 store)."""
        if run_id is None:
            return
        if Path(local_path).is_dir():
            self.client.log_artifacts(run_id, str(local_path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(local_path), artifact_path)

    @_tracking_call()
    def log_datasets(self, run_id: str | None, inputs: Sequence[Any]) -> None:
        """Log MLflow ``DatasetInput``s (``vega3d.mlflow_meta.dataset_input``) as the run's inputs."""
        if run_id is None or not inputs:
            return
        self.client.log_inputs(run_id, datasets=list(inputs))

    @_tracking_call()
    def log_text(self, run_id: str | None, text: str, artifact_file: str) -> None:
        """Write ``text`` as the artifact ``artifact_file`` (e.g. ``report/benchmarks.md``)."""
        if run_id is None:
            return
        self.client.log_text(run_id, text, artifact_file)

    # -------------------------------------------------------------------------------------- registry

    @_tracking_call()
    def register_model(
        self,
        model_name: str,
        source_uri: str,
        run_id: str | None = None,
        aliases: Sequence[str] = (CANDIDATE,),
        tags: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Register the checkpoint folder ``source_uri`` as a version of ``model_name``; returns its number.

        The checkpoint becomes an MLflow logged model (an external model: the weights stay where they are,
        the MLflow model holds the input/output signature and the checkpoint URI) and the version points at
        it. One version per distinct model: when a version already holds a checkpoint with the same content
        fingerprint (an identical rerun), that version gets ``aliases`` and no new one is made. The version
        is linked to ``run_id`` (whose metrics the champion gate compares).
        """
        from mlflow.exceptions import MlflowException

        from vega3d.mlflow_meta import CHECKPOINT_TAG, FINGERPRINT_TAG, remote_fingerprint

        try:
            self.client.get_registered_model(model_name)
        except MlflowException:
            self.client.create_registered_model(model_name)
        fingerprint = remote_fingerprint(source_uri)
        version_tags = {**{k: str(v) for k, v in (tags or {}).items()}, FINGERPRINT_TAG: fingerprint,
                        CHECKPOINT_TAG: source_uri}
        same = [v for v in self.client.search_model_versions(f"name = '{_quote(model_name)}'")
                if v.tags.get(FINGERPRINT_TAG) == fingerprint]
        if same:
            version = min(same, key=lambda v: int(v.version))
            logger.info("%s version %s already holds this model (%s); reusing it", model_name, version.version,
                        source_uri)
        else:
            model_id = self._log_external_model(model_name, source_uri, run_id, version_tags)
            version = self.client.create_model_version(
                model_name, f"models:/{model_id}", run_id=run_id, tags=version_tags, model_id=model_id
            )
        for alias in aliases:
            self.client.set_registered_model_alias(model_name, alias, version.version)
        logger.info("registered %s version %s (%s) aliases %s", model_name, version.version, source_uri, list(aliases))
        return str(version.version)

    def _log_external_model(self, name: str, source_uri: str, run_id: str | None, tags: Mapping[str, str]) -> str:
        """A READY external logged model for the checkpoint at ``source_uri``, with our signature; its id."""
        import tempfile

        from mlflow.entities import LoggedModelOutput
        from mlflow.models.model import MLMODEL_FILE_NAME
        from mlflow.models.utils import get_external_mlflow_model_spec
        from mlflow.utils.mlflow_tags import MLFLOW_MODEL_IS_EXTERNAL

        from vega3d.mlflow_meta import model_signature

        experiment_id = self.client.get_run(run_id).info.experiment_id if run_id else self.experiment_id("Default")
        model = self.client.create_logged_model(
            experiment_id, name=name, source_run_id=run_id, tags={**tags, MLFLOW_MODEL_IS_EXTERNAL: "true"},
            params={"checkpoint_uri": source_uri}, model_type="vega3d",
        )
        spec = get_external_mlflow_model_spec(model)
        spec.signature = model_signature()
        with tempfile.TemporaryDirectory() as folder:
            spec.save(str(Path(folder) / MLMODEL_FILE_NAME))
            self.client.log_model_artifacts(model.model_id, folder)
        self.client.finalize_logged_model(model.model_id, "READY")
        if run_id:  # listed under "Logged models" on the run page
            self.client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
        return model.model_id

    @_tracking_call()
    def alias_version(self, model_name: str, alias: str) -> str | None:
        """The version number that ``alias`` points at, or None."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(model_name, alias).version)
        except MlflowException as error:
            if getattr(error, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    @_tracking_call()
    def promote_if_better(
        self,
        model_name: str,
        version: str,
        metric_names: Sequence[str],
        higher_is_better: bool | Mapping[str, bool] = True,
        alias: str = CHAMPION,
    ) -> GateDecision | None:
        """Point ``alias`` (``champion``) at ``version`` only if it beats the current champion.

        The metrics are those of each version's run. The candidate wins when it is at least as good on every
        metric in ``metric_names`` and strictly better on at least one (``higher_is_better`` per metric or for
        all). With no champion yet, the candidate becomes champion. A metric the champion's run lacks counts
        as beaten (the metric set changed since); one the candidate lacks is an error.
        """
        if not metric_names:
            raise ValueError("promote_if_better needs at least one metric name")
        candidate = self._version_metrics(model_name, version)
        missing = [name for name in metric_names if metric_key(name) not in candidate]
        if missing:
            raise ValueError(
                f"{model_name} version {version}: its run has no metric {', '.join(missing)}; log them on the "
                "run passed to register_model, or fix the gate's metric names"
            )
        champion_version = self.alias_version(model_name, alias)
        comparison: dict[str, tuple[float, float | None]] = {}
        if champion_version == str(version):
            return GateDecision(False, str(version), champion_version, f"version {version} already is {alias}")
        champion = self._version_metrics(model_name, champion_version) if champion_version else {}
        better = worse = 0
        for name in metric_names:
            ours, theirs = candidate[metric_key(name)], champion.get(metric_key(name))
            comparison[name] = (ours, theirs)
            if theirs is None or math.isnan(theirs):
                better += 1
                continue
            up = higher_is_better if isinstance(higher_is_better, bool) else higher_is_better.get(name, True)
            delta = (ours - theirs) if up else (theirs - ours)
            better += delta > 0
            worse += delta < 0
        if champion_version is None:
            promoted, reason = True, f"no {alias} yet"
        elif worse == 0 and better > 0:
            promoted, reason = True, f"beats version {champion_version} on {better} of {len(metric_names)} metrics"
        else:
            promoted = False
            reason = f"does not beat version {champion_version} (better on {better}, worse on {worse})"
        if promoted:
            self.client.set_registered_model_alias(model_name, alias, str(version))
        logger.info("champion gate for %s version %s: %s", model_name, version, reason)
        return GateDecision(promoted, str(version), champion_version, reason, comparison)

    def _version_metrics(self, model_name: str, version: str) -> dict[str, float]:
        model_version = self.client.get_model_version(model_name, str(version))
        if not model_version.run_id:
            raise ValueError(f"{model_name} version {version} has no run; register it with run_id=...")
        return dict(self.client.get_run(model_version.run_id).data.metrics)


@dataclass
class StageRun:
    """Handle on one stage's child run; every method is a no-op when ``run_id`` is None (tracking off)."""

    tracker: Tracker
    run_id: str | None
    stage: str

    def log_params(self, config: Any) -> None:
        """``Tracker.log_params_flat`` on this run."""
        self.tracker.log_params_flat(self.run_id, config)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """``Tracker.log_metrics`` on this run."""
        self.tracker.log_metrics(self.run_id, metrics, step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """``Tracker.set_tags`` on this run."""
        self.tracker.set_tags(self.run_id, tags)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        """``Tracker.log_artifact`` on this run."""
        self.tracker.log_artifact(self.run_id, local_path, artifact_path)

    def log_datasets(self, inputs: Sequence[Any]) -> None:
        """``Tracker.log_datasets`` on this run."""
        self.tracker.log_datasets(self.run_id, inputs)


def _quote(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("'", "\\'")
