"""Process-wide test settings: no network, no telemetry, deterministic threads."""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

# Real SeaweedFS / MLflow servers on loopback for any test folder: seaweedfs, mlflow_server, s3_env, s3_prefix,
# mlflow_env (see tests/platform/fixtures.py).
pytest_plugins = ["tests.platform.fixtures"]
