"""The kfp.local runner of a local pipeline run: subprocesses of this Python, or containers of the CPU image.

``docker`` runs every step in ``vega3d-cpu`` (``make images``) through ``kfp.local.DockerRunner`` on the daemon at
``DOCKER_HOST``, the way a cluster runs them: the host network (so steps reach SeaweedFS and MLflow on
loopback), a non-root user, a read-only root filesystem, no capabilities, and only two writable places: the
pipeline root (kfp.local mounts it at the same path) and a private ``/tmp`` (tmpfs, which is also HOME and
every cache). Steps see nothing of this machine but the pipeline root and the environment variables below.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from components.images import VERSION

RUNNERS = ("subprocess", "docker")
LOCAL_IMAGE = os.environ.get("VEGA3D_LOCAL_IMAGE", f"vega3d-cpu:{VERSION}")
STEP_USER = "10001:10001"  # the image's user (images/Dockerfile.*)
STEP_TMP = "/tmp"
# What a step needs from this process's environment: S3 and MLflow endpoints and credentials, the pipeline run
# key, thread counts. Anything else (paths of this machine included) stays out.
PASSED_PREFIXES = ("AWS_", "MLFLOW_", "VEGA3D_PIPELINE_RUN_ID", "VEGA3D_GIT_SHA", "OMP_NUM_THREADS",
                   "TOKENIZERS_PARALLELISM", "HF_HUB_OFFLINE")
# Where the steps' caches go inside the container: the private tmpfs.
STEP_ENV = {
    "HOME": STEP_TMP,
    "VEGA3D_CACHE": f"{STEP_TMP}/vega3d-cache",
    "TORCH_EXTENSIONS_DIR": f"{STEP_TMP}/torch_extensions",
    "MPLCONFIGDIR": f"{STEP_TMP}/matplotlib",
    "TRITON_CACHE_DIR": f"{STEP_TMP}/triton",
}


def step_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a containerised step: the passed variables of ``environ`` plus the in-container caches."""
    environ = dict(os.environ if environ is None else environ)
    passed = {k: v for k, v in environ.items() if k.startswith(PASSED_PREFIXES)}
    return {**passed, **STEP_ENV}


def step_user() -> str:
    """The image's non-root user; a non-root caller's own uid:gid, so the outputs stay theirs."""
    return STEP_USER if os.geteuid() == 0 else f"{os.getuid()}:{os.getgid()}"


def check_docker(image: str) -> None:
    """Fail with one clear line unless the daemon at DOCKER_HOST answers and holds ``image``."""
    import docker

    host = os.environ.get("DOCKER_HOST", "the default socket")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        raise RuntimeError(f"no Docker daemon answers at {host} ({error}); start one with "
                           "`images/dockerd.sh start` and `eval $(images/dockerd.sh env)`") from None
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise RuntimeError(f"image {image} is not in the Docker daemon at {host}; build it with `make images` "
                           "(or set VEGA3D_LOCAL_IMAGE)") from None
    finally:
        client.close()


def prepare_pipeline_root(pipeline_root: Path) -> None:
    """Give the pipeline root to the step user (the only folder of this machine a step may write)."""
    pipeline_root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        uid, gid = (int(part) for part in STEP_USER.split(":"))
        os.chown(pipeline_root, uid, gid)


def docker_runner(pipeline_root: Path, image: str = LOCAL_IMAGE):
    """A ``kfp.local.DockerRunner`` running steps in ``image`` confined as the module docstring says."""
    from kfp import local

    check_docker(image)
    prepare_pipeline_root(pipeline_root)
    return local.DockerRunner(
        network_mode="host",
        user=step_user(),
        read_only=True,
        tmpfs={STEP_TMP: "rw,exec,nosuid,nodev,mode=1777"},
        shm_size="1g",  # torch's shared-memory tensors and DeepSpeed's gloo need more than Docker's 64 MB
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        working_dir=STEP_TMP,
        environment=step_environment(),
    )


def check_runner_params(kind: str, params: dict, pipeline_root: Path) -> None:
    """Refuse, before any step runs, a local ``storage_root``/``data_uri`` that containerised steps cannot see."""
    if kind != "docker":
        return
    for name in ("storage_root", "data_uri"):
        value = str(params.get(name, ""))
        if not value or ("://" in value and not value.startswith("file://")):
            continue
        folder = Path(value.removeprefix("file://")).resolve()
        if not folder.is_relative_to(pipeline_root.resolve()):
            raise ValueError(f"{name}={value} is a local folder outside the pipeline root {pipeline_root}: steps in "
                             f"containers see only the pipeline root; use an s3:// URI or a folder under it")


def make_runner(kind: str, pipeline_root: Path):
    """The kfp.local runner called ``kind`` (one of RUNNERS) for a run under ``pipeline_root``."""
    from kfp import local

    if kind == "subprocess":
        return local.SubprocessRunner(use_venv=False)
    if kind == "docker":
        return docker_runner(pipeline_root)
    raise ValueError(f"unknown runner {kind!r}; choose from {list(RUNNERS)}")


@contextmanager
def step_images(kind: str, pipeline_module, image: str = LOCAL_IMAGE) -> Iterator[None]:
    """While the pipeline is built, point every component of ``pipeline_module`` at ``image`` (docker only).

    The components name the published CPU and CUDA images; locally every step runs in the CPU image built
    here. Tasks copy their component's container spec when the pipeline is built, so the components are
    restored afterwards and nothing else sees the change.
    """
    from kfp.dsl.base_component import BaseComponent

    if kind != "docker":
        yield
        return
    containers = [value.component_spec.implementation.container for value in vars(pipeline_module).values()
                  if isinstance(value, BaseComponent) and value.component_spec.implementation.container]
    originals = [container.image for container in containers]
    for container in containers:
        container.image = image
    try:
        yield
    finally:
        for container, original in zip(containers, originals, strict=True):
            container.image = original
