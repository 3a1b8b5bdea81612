"""The choice of kfp.local runner: what a containerised step is given, and the images its tasks name."""

import pytest
from typer.testing import CliRunner

from components.images import CPU_IMAGE, CUDA_IMAGE
from pipelines import vega3d_pipeline
from pipelines.runners import (
    LOCAL_IMAGE,
    check_docker,
    check_runner_params,
    make_runner,
    step_environment,
    step_images,
)
from vega3d.cli import app


def test_step_environment_passes_endpoints_and_credentials_but_no_host_paths():
    host = {"AWS_ACCESS_KEY_ID": "key", "AWS_ENDPOINT_URL": "http://127.0.0.1:8333", "MLFLOW_TRACKING_URI": "http://x",
            "VEGA3D_PIPELINE_RUN_ID": "run-1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin", "HOME": "/root",
            "VEGA3D_CACHE": "/root/.cache/vega3d", "PYTHONPATH": "/work", "TORCH_EXTENSIONS_DIR": "/work/.cache"}
    env = step_environment(host)
    assert env == {"AWS_ACCESS_KEY_ID": "key", "AWS_ENDPOINT_URL": "http://127.0.0.1:8333",
                   "MLFLOW_TRACKING_URI": "http://x", "VEGA3D_PIPELINE_RUN_ID": "run-1", "OMP_NUM_THREADS": "1",
                   "HOME": "/tmp", "VEGA3D_CACHE": "/tmp/vega3d-cache", "TORCH_EXTENSIONS_DIR": "/tmp/torch_extensions",
                   "MPLCONFIGDIR": "/tmp/matplotlib", "TRITON_CACHE_DIR": "/tmp/triton"}


def _executor_images(pipeline) -> dict[str, str]:
    executors = pipeline.pipeline_spec.deployment_spec["executors"]
    return {name: spec["container"]["image"] for name, spec in executors.items() if "container" in spec}


def test_docker_runs_build_every_task_on_the_local_cpu_image_and_restore_the_components():
    with step_images("docker", vega3d_pipeline):
        local_images = _executor_images(vega3d_pipeline.build_pipeline(local=True))
    assert len(local_images) >= 8 and set(local_images.values()) == {LOCAL_IMAGE}
    published = _executor_images(vega3d_pipeline.build_pipeline(local=True))
    assert set(published.values()) == {CPU_IMAGE, CUDA_IMAGE}  # the components name the published images again
    assert published["exec-train"] == CUDA_IMAGE and published["exec-prep"] == CPU_IMAGE
    with step_images("subprocess", vega3d_pipeline):
        assert _executor_images(vega3d_pipeline.build_pipeline(local=True)) == published


def test_unknown_runner_and_missing_daemon_are_one_line_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown runner 'kubernetes'; choose from \['subprocess', 'docker'\]"):
        make_runner("kubernetes", tmp_path)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    with pytest.raises(RuntimeError, match=rf"no Docker daemon answers at unix://{tmp_path}/no.sock .*dockerd.sh start"):
        check_docker(LOCAL_IMAGE)


def test_docker_refuses_local_storage_outside_the_pipeline_root(tmp_path):
    root = tmp_path / "kfp"
    inside = {"storage_root": str(root / "store"), "data_uri": f"file://{root}/data"}
    check_runner_params("docker", {**inside, "mlflow_uri": "http://127.0.0.1:5000"}, root)
    check_runner_params("docker", {"storage_root": "s3://bucket/x", "data_uri": "s3://bucket/x/data"}, root)
    check_runner_params("subprocess", {"storage_root": str(tmp_path / "elsewhere")}, root)
    with pytest.raises(ValueError, match=rf"^data_uri={tmp_path}/data is a local folder outside the pipeline root"):
        check_runner_params("docker", {**inside, "data_uri": str(tmp_path / "data")}, root)


@pytest.mark.parametrize(("command", "option"), [(["pipeline", "run"], "--runner"), (["demo"], "--containers")])
def test_cli_offers_the_container_runner(command, option):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and option in result.output and "vega3d-cpu" in result.output
