"""Where each step runs in the cluster: GPU node pool for the GPU steps, CPU defaults for the rest.

Applied with kfp-kubernetes at compile time; kfp.local ignores these settings, so the same pipeline runs on
one machine. GPU steps (extract, train, evaluate) get the accelerator type and count, the GPU node pool's
node selector and tolerations, /dev/shm as a memory emptyDir, retries (spot/preemptible nodes) and
timeouts; every step that reads storage or MLflow gets the credentials from Kubernetes secrets as env.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kfp import kubernetes

from vega3d.cluster.secrets import MLFLOW_SECRET, MLFLOW_SECRET_KEYS, S3_SECRET, S3_SECRET_KEYS

GPU_STEPS = ("extract", "train", "evaluate")
CPU_STEPS = ("setup", "decide", "skip", "prep", "report", "finalize")
# Presets that run on CPUs (tiny random models): their GPU steps request no GPU and small CPU/memory.
CPU_PRESETS = ("tiny",)


@dataclass(frozen=True)
class Placement:
    """Compile-time resources of the steps (node selector and tolerations are runtime parameters).

    ``gpu=False`` places the GPU steps like CPU steps (no accelerator, node pool, /dev/shm); ``for_preset``
    picks the resources a preset needs, each field still overridable with ``dataclasses.replace``.
    """

    gpu: bool = True
    s3_secret: str = S3_SECRET
    s3_secret_keys: dict[str, str] = field(default_factory=lambda: dict(S3_SECRET_KEYS))
    mlflow_secret: str = MLFLOW_SECRET
    mlflow_secret_keys: dict[str, str] = field(default_factory=lambda: dict(MLFLOW_SECRET_KEYS))
    shm_size: str = "64Gi"
    cpu_request: dict[str, str] = field(
        default_factory=lambda: {"prep": "4", "extract": "8", "train": "32", "evaluate": "8", "report": "1"}
    )
    memory_request: dict[str, str] = field(
        default_factory=lambda: {"prep": "16G", "extract": "64G", "train": "512G", "evaluate": "64G",
                                 "report": "2G"}
    )
    timeout_s: dict[str, int] = field(
        default_factory=lambda: {"prep": 6 * 3600, "extract": 24 * 3600, "train": 72 * 3600,
                                 "evaluate": 12 * 3600, "report": 3600}
    )
    retries: dict[str, int] = field(default_factory=lambda: {"extract": 2, "train": 2, "evaluate": 2})

    @classmethod
    def for_preset(cls, preset: str, gpu: bool | None = None) -> Placement:
        """Resources of ``preset``: CPU presets (tiny) get small CPU requests and no GPU; ``gpu`` overrides."""
        if preset not in CPU_PRESETS:
            return cls() if gpu is None else cls(gpu=gpu)
        return cls(gpu=bool(gpu), shm_size="1Gi", cpu_request={step: "2" for step in (*GPU_STEPS, "prep")} | {"report": "1"},
                   memory_request={step: "8G" for step in (*GPU_STEPS, "prep")} | {"report": "2G"},
                   timeout_s={step: 3600 for step in (*GPU_STEPS, "prep", "report")})


def apply_credentials(task, placement: Placement):
    """S3 and MLflow credentials from Kubernetes secrets (optional, so clusters without auth still run); the
    container runs as the images' non-root user (kfp's backend adds no privilege escalation, no capabilities)."""
    kubernetes.set_security_context(task, run_as_user=10001, run_as_group=10001, run_as_non_root=True)
    kubernetes.use_secret_as_env(task, placement.s3_secret, placement.s3_secret_keys, optional=True)
    kubernetes.use_secret_as_env(task, placement.mlflow_secret, placement.mlflow_secret_keys, optional=True)
    kubernetes.use_field_path_as_env(task, "VEGA3D_PIPELINE_RUN_ID", "metadata.labels['pipeline/runid']")
    return task


def apply_cpu_step(task, step: str, placement: Placement):
    """Requests, timeout and credentials of a CPU step."""
    apply_credentials(task, placement)
    if step in placement.cpu_request:
        task.set_cpu_request(placement.cpu_request[step])
    if step in placement.memory_request:
        task.set_memory_request(placement.memory_request[step])
    if step in placement.timeout_s:
        kubernetes.set_timeout(task, placement.timeout_s[step])
    return task


def apply_gpu_step(task, step: str, placement: Placement, accelerator_type, num_gpus, node_selector, tolerations):
    """Everything a CPU step gets, plus GPUs, the GPU node pool, /dev/shm and retries."""
    apply_cpu_step(task, step, placement)
    task.set_accelerator_type(accelerator_type)
    task.set_accelerator_limit(num_gpus)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    kubernetes.empty_dir_mount(task, volume_name="dshm", mount_path="/dev/shm", medium="Memory",
                               size_limit=placement.shm_size)
    if placement.retries.get(step):
        task.set_retry(num_retries=placement.retries[step], backoff_duration="60s", backoff_factor=2.0)
    return task
