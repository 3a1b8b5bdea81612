"""vega3d.testing.services: real SeaweedFS and MLflow processes on loopback, kept or stopped cleanly."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import psutil
import pytest

from vega3d.testing.services import (
    LOOPBACK,
    STATE_FILE,
    MlflowServer,
    SeaweedFS,
    Service,
    ServiceError,
    local_services,
    recorded_services,
    seaweedfs_service,
    start_local_services,
    stop_recorded_services,
)


def listening_addresses(pid: int) -> set[str]:
    """IP addresses that the process and its descendants listen on."""
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return {
        conn.laddr.ip
        for proc in processes
        for conn in getattr(proc, "net_connections", proc.connections)(kind="inet")  # psutil < 6: connections()
        if conn.status == psutil.CONN_LISTEN
    }


@pytest.mark.integration
def test_servers_listen_on_loopback_only(seaweedfs: SeaweedFS, mlflow_server: MlflowServer) -> None:
    assert listening_addresses(seaweedfs.pid) == {LOOPBACK}
    assert listening_addresses(mlflow_server.pid) == {LOOPBACK}
    assert seaweedfs.endpoint.startswith(f"http://{LOOPBACK}:")
    with urllib.request.urlopen(f"{mlflow_server.url}/health", timeout=5) as reply:
        assert reply.status == 200


@pytest.mark.integration
def test_context_manager_stops_the_whole_process_group(tmp_path: Path) -> None:
    with seaweedfs_service(tmp_path, bucket="scratch") as s3:
        group = [s3.pid, *(child.pid for child in psutil.Process(s3.pid).children(recursive=True))]
        assert s3.alive()
    assert not s3.alive()
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in group)
    assert "S3           ready" in (tmp_path / "seaweedfs.log").read_text()


@pytest.mark.integration
def test_kept_services_outlive_the_block_and_stop_from_the_state_file(tmp_path: Path) -> None:
    with local_services(tmp_path, keep=True) as services:
        env = services.env()
    assert services.s3.alive() and services.mlflow.alive()
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert state["env"] == env
    assert state["env"]["MLFLOW_TRACKING_URI"] == services.mlflow.url
    assert {state["seaweedfs"]["pid"], state["mlflow"]["pid"]} == {services.s3.pid, services.mlflow.pid}
    with urllib.request.urlopen(f"{services.mlflow.url}/health", timeout=5) as reply:
        assert reply.status == 200

    assert stop_recorded_services(tmp_path) == ["mlflow", "seaweedfs"]
    assert not services.s3.alive() and not services.mlflow.alive()
    assert not (tmp_path / STATE_FILE).exists()
    assert stop_recorded_services(tmp_path) == []


def test_a_recycled_pid_is_not_stopped(tmp_path: Path) -> None:
    """A pid in services.json that now belongs to another program is left alone."""
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        state = {"seaweedfs": {"pid": stranger.pid, "log": str(tmp_path / "x.log"), "command": ["/bin/weed", "mini"]}}
        (tmp_path / STATE_FILE).write_text(json.dumps(state))
        assert stop_recorded_services(tmp_path) == []
        assert stranger.poll() is None
    finally:
        Service("sleep", stranger, tmp_path / "x.log").stop(timeout=5)
    assert stranger.poll() is not None


def test_services_still_running_block_a_second_start(tmp_path: Path) -> None:
    """Two SeaweedFS on one data folder would corrupt it: a live recorded service stops a new start."""
    recorded = subprocess.Popen(["sleep", "30"], start_new_session=True)  # stands in for a kept server
    try:
        state = {"seaweedfs": {"pid": recorded.pid, "log": str(tmp_path / "s.log"), "command": ["/usr/bin/sleep"]}}
        (tmp_path / STATE_FILE).write_text(json.dumps(state))
        assert [service.pid for service in recorded_services(tmp_path)] == [recorded.pid]
        with pytest.raises(ServiceError, match=rf"seaweedfs \(pid {recorded.pid}\) from an earlier run"):
            start_local_services(tmp_path)
        assert not (tmp_path / "seaweedfs").exists()  # nothing was started
        assert stop_recorded_services(tmp_path) == ["seaweedfs"]
        assert recorded.wait(timeout=10) is not None
    finally:
        if recorded.poll() is None:
            recorded.kill()
    assert recorded_services(tmp_path) == []
