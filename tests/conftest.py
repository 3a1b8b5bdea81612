"""Process-wide test settings: no network, no telemetry, deterministic threads."""

import os

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Real SeaweedFS / MLflow servers on loopback for any test folder: seaweedfs, mlflow_server, s3_env, s3_prefix,
# mlflow_env (see tests/platform/fixtures.py).
pytest_plugins = ["tests.platform.fixtures"]


def pytest_addoption(parser):
    parser.addoption("--containers", action="store_true",
                     help="run the container tier (tests/containers; needs the images and DOCKER_HOST): "
                          "`make test-containers` does both")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``containers`` run only with --containers (``make test`` leaves them to their own target)."""
    if config.getoption("--containers"):
        return
    skip = pytest.mark.skip(reason="container tier: run with `make test-containers`")
    for item in items:
        if "containers" in item.keywords:
            item.add_marker(skip)
