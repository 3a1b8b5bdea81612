"""The container tier: runs vega3d's images on the Docker daemon at DOCKER_HOST (`make test-containers`)."""

import os

import pytest

from components.images import VERSION
from pipelines.runners import LOCAL_IMAGE

CUDA_IMAGE = os.environ.get("VEGA3D_LOCAL_CUDA_IMAGE", f"vega3d-cuda:{VERSION}")


@pytest.fixture(scope="session")
def docker_client():
    """A client of the daemon at DOCKER_HOST; the tier fails (not skips) when there is none or it lacks an image."""
    import docker

    from pipelines.runners import check_docker

    check_docker(LOCAL_IMAGE)
    client = docker.from_env()
    yield client
    client.close()


def run_in(client, image: str, command: list[str], **kwargs) -> str:
    """Output of ``command`` in a fresh container of ``image`` (host network, removed afterwards)."""
    return client.containers.run(image, command, remove=True, network_mode="host", stderr=True, **kwargs).decode()
