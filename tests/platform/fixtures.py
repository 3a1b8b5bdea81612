"""Session-scoped real servers on loopback, shared by every test folder (registered in tests/conftest.py).

Fixtures
--------
``seaweedfs``      a running SeaweedFS (``vega3d.testing.services.SeaweedFS``): ``.endpoint``, ``.access_key``,
                   ``.secret_key``, ``.bucket``, ``.env()`` (AWS_* variables), ``.uri(*parts)`` -> s3://bucket/...
                   Started once per test session (about 1 s), stopped at the end.
``mlflow_server``  a running MLflow server (``vega3d.testing.services.MlflowServer``) with a SQLite backend whose
                   artifacts are proxied to ``s3://<bucket>/mlflow`` on ``seaweedfs``: ``.url``, ``.env()``,
                   ``.artifacts_destination``. Started once per session (5 s idle, up to 30 s on a busy machine).
``s3_env``         function-scoped: exports ``seaweedfs.env()`` into os.environ (restored afterwards) so
                   ``vega3d.storage`` and boto3 talk to the server; yields the SeaweedFS.
``s3_prefix``      function-scoped: a fresh ``s3://<bucket>/tests/<uuid>`` folder for one test (implies s3_env).
``mlflow_env``     function-scoped: s3_env plus MLFLOW_TRACKING_URI of ``mlflow_server``; yields the server.

Tests that use them must be marked ``@pytest.mark.integration``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from vega3d.testing.services import MlflowServer, SeaweedFS, start_mlflow, start_seaweedfs


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A real SeaweedFS S3 server on loopback for the whole session (bucket ``vega3d-test``)."""
    service = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), bucket="vega3d-test")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def mlflow_server(seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow server on loopback, SQLite backend, artifacts proxied to ``seaweedfs``."""
    service = start_mlflow(tmp_path_factory.mktemp("mlflow"), seaweedfs, artifacts_prefix="mlflow")
    yield service
    service.stop()


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """Point the AWS variables of this process at ``seaweedfs`` for one test."""
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    return seaweedfs


@pytest.fixture
def s3_prefix(s3_env: SeaweedFS) -> str:
    """A fresh, empty ``s3://<bucket>/tests/<uuid>`` folder for one test."""
    return s3_env.uri("tests", uuid.uuid4().hex)


@pytest.fixture
def mlflow_env(s3_env: SeaweedFS, mlflow_server: MlflowServer, monkeypatch: pytest.MonkeyPatch) -> MlflowServer:
    """s3_env plus MLFLOW_TRACKING_URI pointing at ``mlflow_server``."""
    for name, value in mlflow_server.env().items():
        monkeypatch.setenv(name, value)
    return mlflow_server
