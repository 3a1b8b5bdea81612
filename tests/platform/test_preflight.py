"""Fail fast (issue 16): output locations, the data root and the tracking server are checked before any work."""

from __future__ import annotations

import http.server
import logging
import threading
from pathlib import Path

import pytest

from vega3d import storage
from vega3d.config import load_config
from vega3d.preflight import PROBE_PREFIX, PreflightError, preflight, tracking_problem


def _cfg(tmp_path: Path, output: str):
    cfg = load_config("tiny")
    data = tmp_path / "data"
    for folder in ("scannet", "benchmark", "processed"):  # a data root for training and evaluation alike
        (data / folder).mkdir(parents=True, exist_ok=True)
    return cfg.model_copy(update={
        "data": cfg.data.model_copy(update={"root": str(data)}),
        "train": cfg.train.model_copy(update={"output_uri": output, "max_steps": 1000}),
        "eval": cfg.eval.model_copy(update={"output_uri": output}),
        "tracking": cfg.tracking.model_copy(update={"uri": ""}),
    })


def test_unwritable_output_stops_training_before_it_starts(tmp_path):
    """The output sits under a file: training used to run until its first checkpoint (step 500) to find out."""
    from vega3d.train.launch import launch_training

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = _cfg(tmp_path, str(blocker / "run"))
    with pytest.raises(PreflightError) as error:
        launch_training(cfg, nproc=1)
    assert len(error.value.problems) == 1
    assert f"output {blocker / 'run'} is not writable" in error.value.problems[0]
    assert "--output" in error.value.problems[0]


def test_unwritable_output_stops_evaluation_before_predicting(tmp_path):
    from vega3d.evaluation.run import evaluate

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cfg = _cfg(tmp_path, str(blocker / "eval"))
    with pytest.raises(PreflightError, match="is not writable"):
        evaluate(cfg, "scanqa", meteor=False)


def test_missing_data_root_and_every_problem_at_once(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(PreflightError) as error:
        preflight([str(blocker / "a"), str(tmp_path / "ok")], data_root=str(tmp_path / "nowhere"))
    assert len(error.value.problems) == 2
    assert "not writable" in error.value.problems[0]
    assert error.value.problems[1].startswith(f"data root {tmp_path / 'nowhere'} does not exist; pass --data-root ")
    assert (tmp_path / "ok").is_dir() and not list((tmp_path / "ok").iterdir())  # the probe was removed


@pytest.mark.integration
def test_s3_output_needs_working_credentials(s3_prefix, monkeypatch):
    preflight([s3_prefix])  # writable: passes and leaves nothing behind
    left = storage.listdir(s3_prefix) if storage.exists(s3_prefix) else []
    assert not [name for name in left if PROBE_PREFIX in name]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(PreflightError, match=f"output {s3_prefix} is not writable"):
        preflight([s3_prefix])


class _AuthHandler(http.server.BaseHTTPRequestHandler):
    """/health 200; the API 401 (an MLflow behind basic auth, called without credentials)."""

    def do_GET(self) -> None:
        code = 200 if self.path == "/health" else 401
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_tracking_server_is_probed_up_front(tmp_path, caplog):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AuthHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}"
        problem = tracking_problem(uri)
        assert problem == f"tracking server {uri} answers /api/2.0/mlflow/experiments/search with HTTP 401; " \
                          "check MLFLOW_TRACKING_USERNAME/PASSWORD"
        with caplog.at_level(logging.WARNING, logger="vega3d.preflight"):
            preflight([str(tmp_path / "out")], tracking_uri=uri)  # tracking is optional: a warning, up front
        assert any("HTTP 401" in r.getMessage() for r in caplog.records)
    finally:
        server.shutdown()
        server.server_close()
    assert "does not answer /health" in tracking_problem(uri, timeout_s=1)
