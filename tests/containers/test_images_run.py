"""Both images start and hold the package: the CPU image runs as UID 10001, the CUDA image imports its stack."""

import pytest

from pipelines.runners import LOCAL_IMAGE
from tests.containers.conftest import CUDA_IMAGE, run_in

pytestmark = pytest.mark.containers


def test_cpu_image_runs_the_cli_as_the_non_root_user(docker_client):
    out = run_in(docker_client, LOCAL_IMAGE, ["bash", "-c", "id -u; id -g; vega3d --help"])
    uid, gid, help_text = out.split("\n", 2)
    assert (uid, gid) == ("10001", "10001")
    assert "pipeline" in help_text and "demo" in help_text


def test_cuda_image_imports_torch_with_cuda_and_deepspeed(docker_client):
    script = ("import vega3d, torch, deepspeed; "
              "print('VERSIONS', torch.__version__, torch.version.cuda, deepspeed.__version__, vega3d.__name__)")
    out = run_in(docker_client, CUDA_IMAGE, ["python", "-c", script])  # DeepSpeed logs its accelerator first
    line = next(line for line in out.splitlines() if line.startswith("VERSIONS "))
    torch_version, cuda_version, deepspeed_version, name = line.split()[1:]
    assert torch_version.startswith("2.13.0") and "+cpu" not in torch_version
    assert cuda_version != "None"  # a CUDA build of torch (its libraries from the nvidia-* wheels or the base)
    assert deepspeed_version == "0.19.8" and name == "vega3d"
    help_text = run_in(docker_client, CUDA_IMAGE, ["vega3d", "--help"])
    assert "Usage" in help_text and "pipeline" in help_text and "demo" in help_text
