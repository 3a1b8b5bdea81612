"""A tracking server that answers /health but fails every call must not stall training (issue 16)."""

from __future__ import annotations

import http.server
import threading

import pytest

from vega3d.tracking import SAFE_HTTP_SETTINGS, Tracker


class _FailingHandler(http.server.BaseHTTPRequestHandler):
    """/health -> 200; every API call -> 500 (a server whose database is gone)."""

    api_calls: list[str] = []

    def _reply(self) -> None:
        healthy = self.path.startswith("/health")
        if not healthy:
            type(self).api_calls.append(self.path)
        body = b"OK" if healthy else b'{"error_code": "INTERNAL_ERROR", "message": "database is locked"}'
        self.send_response(200 if healthy else 500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply

    def log_message(self, *args) -> None:  # quiet
        pass


@pytest.fixture
def failing_server(monkeypatch):
    for name in SAFE_HTTP_SETTINGS:  # the defaults must come from the Tracker (restored after the test)
        monkeypatch.setenv(name, "0")
        monkeypatch.delenv(name)
    _FailingHandler.api_calls = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FailingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_safe_tracker_gives_up_after_bounded_retries(failing_server, caplog):
    tracker = Tracker(failing_server, safe=True, probe_timeout=1)
    assert tracker.enabled  # /health answers
    assert tracker.start_pipeline_run("exp", "run-1", "tiny") is None
    for step in range(20):  # a training loop logging every step
        tracker.log_metrics("some-run", {"loss": 1.0}, step=step)
    assert not tracker.enabled
    # 2 failing calls before tracking is turned off, each tried 1 + 2 times (MLflow's default: 1 + 7 each,
    # with a backoff that adds up to about 4 minutes per call)
    assert len(_FailingHandler.api_calls) == 2 * 3
    assert any("disabled for the rest of this process" in r.getMessage() for r in caplog.records)


def test_user_retry_settings_are_kept(failing_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    tracker = Tracker(failing_server, safe=True, probe_timeout=1)
    tracker.start_pipeline_run("exp", "run-1", "tiny")
    tracker.log_metrics("some-run", {"loss": 1.0})
    assert not tracker.enabled and len(_FailingHandler.api_calls) == 2
