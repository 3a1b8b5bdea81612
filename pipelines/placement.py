"""Where each step runs in the cluster: GPU node pool for the GPU steps, CPU defaults for the rest.

Applied with kfp-kubernetes at compile time; kfp.local ignores these settings, so the same pipeline runs on
one machine. GPU steps (extract, train, evaluate) get the accelerator type and count, the GPU node pool's
node selector and tolerations, /dev/shm as a memory emptyDir, retries (spot/preemptible nodes) and
timeouts; every step that reads storage or MLflow gets the credentials from Kubernetes secrets as env.
"""

from dataclasses import dataclass, field

from kfp import kubernetes

GPU_STEPS = ("extract", "train", "evaluate")
CPU_STEPS = ("setup", "decide", "skip", "prep", "report", "finalize")

DEFAULT_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@dataclass(frozen=True)
class Placement:
    """Compile-time resources of the steps (node selector and tolerations are runtime parameters)."""

    s3_secret: str = "vega3d-s3"
    s3_secret_keys: dict[str, str] = field(
        default_factory=lambda: {"access-key": "AWS_ACCESS_KEY_ID", "secret-key": "AWS_SECRET_ACCESS_KEY",
                                 "endpoint": "AWS_ENDPOINT_URL"}
    )
    mlflow_secret: str = "vega3d-mlflow"
    mlflow_secret_keys: dict[str, str] = field(
        default_factory=lambda: {"username": "MLFLOW_TRACKING_USERNAME", "password": "MLFLOW_TRACKING_PASSWORD"}
    )
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
