"""Multi-node training on Kubernetes through a Kubeflow Trainer ``TrainJob``.

Two halves, both free of kfp:

- :func:`build_trainjob` turns a :class:`TrainJobRequest` into the TrainJob object (a plain dict) that runs
  ``torchrun -m vega3d.cli train ...`` (DeepSpeed inside) on ``num_nodes`` nodes of the GPU pool;
- :func:`run_trainjob` creates it through an injected ``kubernetes.client.CustomObjectsApi``, streams the
  node-0 logs through an injected ``CoreV1Api``, waits for an explicit terminal condition and deletes the
  job on the way out, whatever happened.

Target API: Kubeflow Trainer ``trainer.kubeflow.org/v1alpha1`` as served by Trainer v2.2 and later, where
per-job pod settings (node selector, tolerations, volumes, volume mounts) go in ``spec.runtimePatches``
(v2.0 called it ``podSpecOverrides`` and v2.1 ``podTemplateOverrides``; both were removed in v2.2). The
runtime is a torch-distributed one: the Trainer's torch plugin sets ``PET_NNODES``, ``PET_NPROC_PER_NODE``,
``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT`` in every node, and torchrun reads them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from vega3d.cluster.secrets import MLFLOW_SECRET, MLFLOW_SECRET_KEYS, S3_SECRET, S3_SECRET_KEYS

logger = logging.getLogger(__name__)

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
API_VERSION = f"{GROUP}/{VERSION}"
#: The replicated job and container of a torch-distributed runtime that run the trainer.
NODE_JOB = "node"
NODE_CONTAINER = "node"
#: Who owns our entry in ``spec.runtimePatches`` (the list is keyed by manager).
PATCH_MANAGER = "vega3d.io/trainjob-launcher"
#: Label carrying the pipeline run a TrainJob belongs to: a retried step adopts or replaces its own job only.
RUN_LABEL = "vega3d.io/run"
#: The namespaced TrainingRuntime shipped in manifests/base/trainer-runtime.yaml.
DEFAULT_RUNTIME = "vega3d-torch-deepspeed"

_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MAX_NAME = 40  # JobSet derives pod names "<name>-node-0-<index>-<random>" that must stay DNS labels


class TrainJobError(RuntimeError):
    """The TrainJob did not complete; the message says why (condition, timeout or deletion)."""


class TrainJobFailed(TrainJobError):
    """The Trainer set the ``Failed`` condition."""


class TrainJobTimeout(TrainJobError):
    """No terminal condition before the launcher's timeout."""


class TrainJobDeleted(TrainJobError):
    """The TrainJob disappeared (404) while the launcher was waiting for it."""


@dataclass(frozen=True)
class SecretEnv:
    """An environment variable read from a key of a Kubernetes Secret (never a literal value)."""

    name: str
    secret: str
    key: str
    optional: bool = False


def default_secret_env() -> list[SecretEnv]:
    """S3 and MLflow credentials by reference (optional: clusters with workload identity or no auth run too)."""
    return [
        SecretEnv(env, secret, key, optional=True)
        for secret, keys in ((S3_SECRET, S3_SECRET_KEYS), (MLFLOW_SECRET, MLFLOW_SECRET_KEYS))
        for key, env in keys.items()
    ]


@dataclass(frozen=True)
class NodeResources:
    """Where and with what each training node runs: one pod per node of the GPU pool."""

    accelerators_per_node: int = 8
    accelerator_resource: str = "nvidia.com/gpu"
    cpu: str = "32"
    memory: str = "400Gi"
    shm_size: str = "64Gi"
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)

    def resources(self) -> dict[str, Any]:
        """ResourceRequirements per node: GPUs requested = limited (extended resources must match)."""
        requests: dict[str, Any] = {"cpu": self.cpu, "memory": self.memory}
        limits: dict[str, Any] = {"memory": self.memory}
        if self.accelerators_per_node > 0:
            requests[self.accelerator_resource] = str(self.accelerators_per_node)
            limits[self.accelerator_resource] = str(self.accelerators_per_node)
        return {"requests": requests, "limits": limits}


@dataclass(frozen=True)
class TrainJobRequest:
    """Everything a multi-node training run needs; ``train_args`` are passed to ``vega3d train`` as is."""

    name: str
    namespace: str
    image: str
    train_args: Sequence[str]
    num_nodes: int = 1
    placement: NodeResources = field(default_factory=NodeResources)
    runtime: str = DEFAULT_RUNTIME
    runtime_kind: Literal["TrainingRuntime", "ClusterTrainingRuntime"] = "TrainingRuntime"
    env: Mapping[str, str] = field(default_factory=dict)
    secret_env: Sequence[SecretEnv] = field(default_factory=default_secret_env)
    deadline_s: int | None = None
    run_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    owner: Mapping[str, str] | None = None


def trainjob_name(prefix: str, run_id: str) -> str:
    """A valid TrainJob name (RFC 1035 label, at most 40 characters) unique per run id.

    ``trainjob_name("vega3d-train", "8f0c...-run")`` -> ``"vega3d-train-<10 hex of sha1(run_id)>"``.
    """
    digest = hashlib.sha1(run_id.encode("utf-8")).hexdigest()[:10]
    stem = re.sub(r"[^a-z0-9-]+", "-", prefix.lower()).strip("-") or "vega3d"
    if not stem[0].isalpha():
        stem = "j" + stem
    stem = stem[: _MAX_NAME - len(digest) - 1].rstrip("-")
    return f"{stem}-{digest}"


def _label_value(text: str) -> str:
    """A Kubernetes label value (<= 63 of [A-Za-z0-9_.-], alphanumeric ends) standing for ``text``."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")
    if len(value) > 63 or not value:
        value = f"{value[:52].rstrip('-_.')}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:10]}".lstrip("-_.")
    return value


def owner_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """The launcher pod as owner (KFP sets ``KFP_POD_NAME``/``KFP_POD_UID``), so that Kubernetes garbage
    collection removes the TrainJob even when the launcher is killed before its ``finally`` runs."""
    environ = os.environ if environ is None else environ
    name, uid = environ.get("KFP_POD_NAME"), environ.get("KFP_POD_UID")
    if not name or not uid:
        return None
    return {"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid}


def train_command(train_args: Sequence[str]) -> list[str]:
    """The node command: torchrun (configured by the runtime's PET_* variables) around ``vega3d train``."""
    return ["torchrun", "--module", "vega3d.cli", "train", *train_args]


def _env_list(request: TrainJobRequest) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": str(v)} for k, v in request.env.items()]
    for item in request.secret_env:
        ref: dict[str, Any] = {"name": item.secret, "key": item.key}
        if item.optional:
            ref["optional"] = True
        env.append({"name": item.name, "valueFrom": {"secretKeyRef": ref}})
    names = [e["name"] for e in env]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"TrainJob env: {duplicates} set twice (as a value and a secret?); keep one of each")
    return env


def _validate(request: TrainJobRequest) -> None:
    if not _NAME_RE.match(request.name) or len(request.name) > _MAX_NAME:
        raise ValueError(
            f"TrainJob name {request.name!r} must be a lowercase RFC 1035 label of at most {_MAX_NAME} "
            "characters (letters, digits, '-', starting with a letter); build one with trainjob_name()"
        )
    if request.num_nodes < 1:
        raise ValueError(f"num_nodes must be >= 1, got {request.num_nodes}")
    if request.placement.accelerators_per_node < 0:
        raise ValueError(f"accelerators_per_node must be >= 0, got {request.placement.accelerators_per_node}")
    if not request.image:
        raise ValueError("TrainJob image is empty: pass the CUDA image built from images/Dockerfile.cuda")
    for toleration in request.placement.tolerations:
        if not isinstance(toleration, Mapping) or not ("key" in toleration or toleration.get("operator") == "Exists"):
            raise ValueError(f"toleration {toleration!r} needs a 'key' (or operator: Exists to tolerate all)")


#: Set on the node container of every TrainJob (also in the runtime; repeated so a changed runtime keeps it).
CONTAINER_SECURITY: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def build_trainjob(request: TrainJobRequest) -> dict[str, Any]:
    """The TrainJob object for ``request`` (a dict ready for CustomObjectsApi and for YAML)."""
    _validate(request)
    placement = request.placement
    labels = {"app.kubernetes.io/part-of": "vega3d", "app.kubernetes.io/component": "train", **request.labels}
    if request.run_id:
        labels[RUN_LABEL] = _label_value(request.run_id)
    metadata: dict[str, Any] = {"name": request.name, "namespace": request.namespace, "labels": labels}
    if request.owner:
        metadata["ownerReferences"] = [dict(request.owner)]
    pod_spec: dict[str, Any] = {
        "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": placement.shm_size}}],
        "containers": [{"name": NODE_CONTAINER, "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
                        "securityContext": dict(CONTAINER_SECURITY)}],
    }
    if placement.node_selector:
        pod_spec["nodeSelector"] = dict(placement.node_selector)
    if placement.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in placement.tolerations]
    trainer: dict[str, Any] = {
        "image": request.image,
        "command": train_command(request.train_args),
        "numNodes": request.num_nodes,
        "resourcesPerNode": placement.resources(),
        "env": _env_list(request),
    }
    if placement.accelerators_per_node > 0:
        trainer["numProcPerNode"] = placement.accelerators_per_node
    spec: dict[str, Any] = {
        "runtimeRef": {"name": request.runtime, "apiGroup": GROUP, "kind": request.runtime_kind},
        "trainer": trainer,
        "runtimePatches": [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {"name": NODE_JOB, "template": {"spec": {"template": {"spec": pod_spec}}}}
                            ]
                        }
                    }
                },
            }
        ],
    }
    if request.deadline_s:
        spec["activeDeadlineSeconds"] = int(request.deadline_s)
    return {"apiVersion": API_VERSION, "kind": "TrainJob", "metadata": metadata, "spec": spec}


def manifest_yaml(manifest: Mapping[str, Any]) -> str:
    """The manifest as YAML (what the launcher records as an artifact)."""
    return yaml.safe_dump(dict(manifest), sort_keys=False)


@dataclass
class TrainJobOutcome:
    """A completed TrainJob: its name, the Complete condition and how many node-0 log lines were seen."""

    name: str
    condition: dict[str, Any]
    log_lines: int


def terminal_condition(trainjob: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``Failed`` or ``Complete`` condition with status "True", if any (Failed wins if both are set)."""
    conditions = (trainjob.get("status") or {}).get("conditions") or []
    active = {c.get("type"): c for c in conditions if str(c.get("status")) == "True"}
    return active.get("Failed") or active.get("Complete")


def _describe(condition: Mapping[str, Any]) -> str:
    return f"reason={condition.get('reason') or '?'}: {condition.get('message') or '(no message)'}"


def _stamp_key(stamp: str) -> tuple[str, str]:
    """Sortable key of an RFC 3339 log timestamp whose fraction may be trimmed ("...05.1Z" < "...05.12Z")."""
    head, dot, rest = stamp.partition(".")
    if not dot:
        return head.rstrip("Z"), ""
    fraction = rest.rstrip("Z")
    return head, fraction.ljust(9, "0")


class _NodeZeroLogs:
    """Incremental node-0 logs, polled: each read asks for the pod's lines with timestamps over the window
    since the previous read (plus a margin) and forwards only lines newer than the last one forwarded.

    Polling keeps the launcher free of threads and of follow streams that die with the API server
    connection, and the window bounds what each read transfers on long runs. A new pod (a restarted node)
    starts from its first line. Errors here never fail the job: the TrainJob status decides.
    """

    MARGIN_S = 10

    def __init__(self, core_api: Any, namespace: str, name: str, sink: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic):
        self.core_api, self.namespace, self.sink, self.clock = core_api, namespace, sink, clock
        self.selector = (
            f"jobset.sigs.k8s.io/jobset-name={name},jobset.sigs.k8s.io/replicatedjob-name={NODE_JOB},"
            "batch.kubernetes.io/job-completion-index=0"
        )
        self.pod: str | None = None
        self.last: tuple[str, str] | None = None
        self.read_at: float | None = None
        self.total = 0

    def poll(self) -> None:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            pods = self.core_api.list_namespaced_pod(self.namespace, label_selector=self.selector).items
            started = [p for p in pods if p.status is not None and p.status.phase != "Pending"]
            if not started:
                return
            pod = max(started, key=lambda p: str(p.metadata.creation_timestamp)).metadata.name
            if pod != self.pod:
                self.pod, self.last, self.read_at = pod, None, None
            since = None if self.read_at is None else int(self.clock() - self.read_at) + self.MARGIN_S
            now = self.clock()
            text = self.core_api.read_namespaced_pod_log(
                pod, self.namespace, container=NODE_CONTAINER, timestamps=True, since_seconds=since
            )
            self.read_at = now
        except (ApiException, HTTPError, OSError) as error:  # logs are best effort; the TrainJob status decides
            logger.debug("node-0 logs unavailable: %s", error)
            return
        for raw in (text or "").splitlines():
            stamp, _, line = raw.partition(" ")
            key = _stamp_key(stamp)
            if self.last is not None and key <= self.last:
                continue
            self.sink(line)
            self.last = key
            self.total += 1


def _status_code(error: BaseException) -> int | None:
    status = getattr(error, "status", None)
    return status if isinstance(status, int) else None


def run_trainjob(
    api: Any,
    manifest: Mapping[str, Any],
    timeout_s: float,
    poll_s: float = 15.0,
    log_sink: Callable[[str], None] = print,
    *,
    core_api: Any | None = None,
    manifest_path: str | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> TrainJobOutcome:
    """Create the TrainJob, stream node-0 logs, return when it is Complete; raise otherwise.

    ``api`` is a ``kubernetes.client.CustomObjectsApi`` and ``core_api`` a ``CoreV1Api`` (None: no logs).
    Raises :class:`TrainJobFailed` with the condition's reason and message, :class:`TrainJobTimeout` after
    ``timeout_s`` seconds without a terminal condition and :class:`TrainJobDeleted` when the object is gone.
    The manifest is written to ``manifest_path`` (YAML, any storage URI) before creation. A job of the same
    name from an earlier attempt of the same run (``RUN_LABEL``) is adopted, or replaced when it failed; one
    of another run raises :class:`TrainJobError` untouched. The TrainJob this call created or adopted is
    deleted on exit (success, failure or interruption).
    """
    from kubernetes.client.exceptions import ApiException

    from vega3d import storage

    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    if manifest_path:
        storage.write_text(manifest_path, manifest_yaml(manifest))
    deadline = clock() + timeout_s
    _create_or_adopt(api, manifest, deadline, poll_s, clock, sleep)
    logs = _NodeZeroLogs(core_api, namespace, name, log_sink, clock) if core_api is not None else None
    try:
        suspended_noted = False
        while True:
            try:
                trainjob = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            except ApiException as error:
                code = _status_code(error)
                if code == 404:
                    raise TrainJobDeleted(f"TrainJob {namespace}/{name} was deleted while running") from error
                if code is None or code < 500:
                    raise
                logger.warning("reading TrainJob %s failed with HTTP %s; retrying", name, code)
                trainjob = {}
            if logs is not None:
                logs.poll()
            condition = terminal_condition(trainjob)
            if condition is not None and condition.get("type") == "Failed":
                raise TrainJobFailed(f"TrainJob {namespace}/{name} failed: {_describe(condition)}")
            if condition is not None:
                logger.info("TrainJob %s completed: %s", name, _describe(condition))
                return TrainJobOutcome(name, dict(condition), logs.total if logs else 0)
            suspended = [
                c for c in (trainjob.get("status") or {}).get("conditions") or []
                if c.get("type") == "Suspended" and str(c.get("status")) == "True"
            ]
            if suspended and not suspended_noted:
                logger.info("TrainJob %s is suspended (%s); waiting", name, _describe(suspended[0]))
                suspended_noted = True
            if clock() >= deadline:
                raise TrainJobTimeout(f"TrainJob {namespace}/{name} did not finish within {timeout_s:.0f} s")
            sleep(poll_s)
    finally:
        _delete(api, namespace, name)


def _create_or_adopt(
    api: Any, manifest: Mapping[str, Any], deadline: float, poll_s: float,
    clock: Callable[[], float], sleep: Callable[[float], None],
) -> None:
    """Create the TrainJob. If one of that name exists and carries the same ``RUN_LABEL`` (an earlier attempt
    of this step, e.g. after the launcher pod was preempted), adopt it while it runs or has completed, and
    replace it when it failed; a TrainJob of another run is never touched."""
    from kubernetes.client.exceptions import ApiException

    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    try:
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, dict(manifest))
        logger.info("created TrainJob %s/%s", namespace, name)
        return
    except ApiException as error:
        if _status_code(error) != 409:
            raise
        conflict = error
    existing = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    ours = (manifest["metadata"].get("labels") or {}).get(RUN_LABEL)
    if not ours or (existing.get("metadata", {}).get("labels") or {}).get(RUN_LABEL) != ours:
        raise TrainJobError(
            f"TrainJob {namespace}/{name} already exists and belongs to another run; delete it or choose a new name"
        ) from conflict
    condition = terminal_condition(existing)
    if condition is None or condition.get("type") == "Complete":
        logger.info("adopting TrainJob %s/%s of an earlier attempt of this run", namespace, name)
        return
    logger.info("replacing failed TrainJob %s/%s of an earlier attempt (%s)", namespace, name, _describe(condition))
    _delete(api, namespace, name)
    while True:
        try:
            api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as error:
            if _status_code(error) == 404:
                break
            raise
        if clock() >= deadline:
            raise TrainJobTimeout(f"failed TrainJob {namespace}/{name} of an earlier attempt is still terminating")
        sleep(poll_s)
    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, dict(manifest))
    logger.info("created TrainJob %s/%s", namespace, name)


def _delete(api: Any, namespace: str, name: str) -> None:
    """Delete the TrainJob and (foreground) its JobSet and pods; a missing job is fine, errors are logged."""
    from kubernetes.client.exceptions import ApiException

    try:
        api.delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, body={"propagationPolicy": "Foreground"}
        )
        logger.info("deleted TrainJob %s/%s", namespace, name)
    except ApiException as error:
        if _status_code(error) != 404:
            logger.warning("could not delete TrainJob %s/%s: %s", namespace, name, error)


#: Plain settings the launcher step forwards from its own environment to the training nodes. Credentials
#: are never forwarded as values: the nodes read them from the secrets (``default_secret_env``).
FORWARDED_ENV = (
    "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_DISABLE_TELEMETRY", "VEGA3D_PIPELINE_RUN_ID",
    "AWS_DEFAULT_REGION", "HF_HUB_OFFLINE", "NCCL_DEBUG", "NCCL_SOCKET_IFNAME", "NCCL_IB_HCA",
)


def request_from_step(
    *,
    image: str,
    train_args: Sequence[str],
    num_nodes: int,
    num_gpus: int,
    accelerator_type: str = "nvidia.com/gpu",
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[Mapping[str, Any]] | None = None,
    run_id: str,
    namespace: str = "vega3d",
    timeout_s: int | None = None,
    cpu: str = NodeResources.cpu,
    memory: str = NodeResources.memory,
    shm_size: str = NodeResources.shm_size,
    environ: Mapping[str, str] | None = None,
) -> TrainJobRequest:
    """The TrainJob request of a pipeline train step: the step's GPU count, accelerator, node selector and
    tolerations per node, its plain settings (``FORWARDED_ENV``) and, as owner, the launcher pod."""
    environ = os.environ if environ is None else environ
    placement = NodeResources(
        accelerators_per_node=num_gpus, accelerator_resource=accelerator_type, cpu=cpu, memory=memory,
        shm_size=shm_size, node_selector=dict(node_selector or {}), tolerations=[dict(t) for t in tolerations or []],
    )
    return TrainJobRequest(
        name=trainjob_name("vega3d-train", run_id),
        namespace=namespace,
        image=image,
        train_args=list(train_args),
        num_nodes=num_nodes,
        placement=placement,
        env={key: environ[key] for key in FORWARDED_ENV if environ.get(key)},
        deadline_s=timeout_s,
        run_id=run_id,
        owner=owner_from_env(environ),
    )


def kubernetes_apis() -> tuple[Any, Any]:
    """(CustomObjectsApi, CoreV1Api) from the in-cluster service account, else from ~/.kube/config."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi(), client.CoreV1Api()
