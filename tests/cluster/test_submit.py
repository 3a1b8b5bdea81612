"""Submitting to Kubeflow Pipelines and reading the gate, with fake kfp and MLflow clients."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from vega3d.cli.submit import submit_command
from vega3d.cluster import submit
from vega3d.tracking import PIPELINE_RUN_ID_TAG


class FakeKfp:
    """kfp.Client stand-in: records the create call and serves a final run state."""

    def __init__(self, final_state="SUCCEEDED", timeout=False, **kwargs):
        self.kwargs = kwargs
        self.final_state, self.timeout = final_state, timeout
        self.created: dict | None = None
        self.waited: tuple | None = None

    def create_run_from_pipeline_package(self, pipeline_file, **kwargs):
        self.created = {"pipeline_file": pipeline_file, **kwargs}
        return SimpleNamespace(run_id="run-42")

    def wait_for_run_completion(self, run_id, timeout, sleep_duration=5):
        self.waited = (run_id, timeout, sleep_duration)
        if self.timeout:
            raise TimeoutError("Run timeout")
        return SimpleNamespace(run_id=run_id, state=self.final_state)


def _recording_factory(store: list):
    def factory(**kwargs):
        store.append(kwargs)
        return FakeKfp(**kwargs)

    return factory


def test_client_with_token_host_and_namespace():
    calls: list[dict] = []
    submit.make_client("https://kfp.example.com", "tok", "team-a", environ={}, factory=_recording_factory(calls))
    assert calls == [{"host": "https://kfp.example.com", "namespace": "team-a", "ui_host": "https://kfp.example.com",
                      "existing_token": "tok"}]


def test_client_reads_host_and_token_from_the_environment():
    calls: list[dict] = []
    submit.make_client(environ={"KFP_HOST": "http://localhost:8080", "KFP_TOKEN": "t2"},
                       factory=_recording_factory(calls))
    assert calls[0]["host"] == "http://localhost:8080" and calls[0]["existing_token"] == "t2"


def test_in_cluster_client_uses_the_projected_sa_token(tmp_path):
    token = tmp_path / "token"
    token.write_text("sa-token")
    calls: list[dict] = []
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KF_PIPELINES_SA_TOKEN_PATH": str(token)}
    submit.make_client(environ=environ, factory=_recording_factory(calls))
    credentials = calls[0]["credentials"]
    assert calls[0]["host"] is None and "existing_token" not in calls[0]
    config = SimpleNamespace(api_key={})
    credentials.refresh_api_key_hook(config)
    assert config.api_key == {"authorization": "sa-token"}


def test_in_cluster_without_token_file_sends_no_credentials(tmp_path):
    calls: list[dict] = []
    environ = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KF_PIPELINES_SA_TOKEN_PATH": str(tmp_path / "missing")}
    submit.make_client(environ=environ, factory=_recording_factory(calls))
    assert calls == [{"host": None}]


def test_run_url():
    assert submit.run_url("https://kfp.example.com/", "abc") == "https://kfp.example.com/#/runs/details/abc"
    assert submit.run_url("localhost:8080", "abc") == "http://localhost:8080/#/runs/details/abc"
    assert submit.run_url(None, "abc") == "/pipeline/#/runs/details/abc"


def test_submit_passes_experiment_run_name_and_parameters(tmp_path):
    package = tmp_path / "vega3d.yaml"
    package.write_text("# PIPELINE DEFINITION\n")
    client = FakeKfp()
    run = submit.submit_pipeline(client, package, {"preset": "wan_t2v", "num_gpus": 8}, experiment="retrain",
                                 run_name="retrain-1", host="https://kfp.example.com", namespace="team-a",
                                 service_account="vega3d-launcher")
    assert run == submit.SubmittedRun("run-42", "https://kfp.example.com/#/runs/details/run-42", "retrain")
    assert client.created == {
        "pipeline_file": str(package), "arguments": {"preset": "wan_t2v", "num_gpus": 8}, "run_name": "retrain-1",
        "experiment_name": "retrain", "namespace": "team-a", "enable_caching": None,
        "service_account": "vega3d-launcher",
    }


def test_submit_without_a_compiled_package_says_how_to_make_it(tmp_path):
    with pytest.raises(submit.SubmitError, match="vega3d pipeline compile"):
        submit.submit_pipeline(FakeKfp(), tmp_path / "none.yaml", {}, experiment="e", run_name="r")


@pytest.mark.parametrize("state", ["FAILED", "CANCELED", "SKIPPED"])
def test_wait_fails_unless_succeeded(state):
    with pytest.raises(submit.SubmitError, match=f"state {state}"):
        submit.wait_for_run(FakeKfp(final_state=state), "run-42", 60)
    assert submit.wait_for_run(FakeKfp(), "run-42", 60) == "SUCCEEDED"


def test_wait_timeout_is_a_failure():
    client = FakeKfp(timeout=True)
    with pytest.raises(submit.SubmitError, match="within 600 s"):
        submit.wait_for_run(client, "run-42", 600, poll_s=10)
    assert client.waited == ("run-42", 600, 10)


class FakeMlflow:
    """MlflowClient stand-in: model versions, their runs' tags and the champion alias."""

    def __init__(self, versions: dict[str, str | None], run_tags: dict[str, dict], champion: str | None,
                 alias_error: str = "RESOURCE_DOES_NOT_EXIST"):
        self.versions, self.run_tags, self.champion, self.alias_error = versions, run_tags, champion, alias_error

    def search_model_versions(self, filter_string):
        assert filter_string == "name='vega3d'"
        return [SimpleNamespace(version=v, run_id=r) for v, r in self.versions.items()]

    def get_run(self, run_id):
        return SimpleNamespace(data=SimpleNamespace(tags=self.run_tags[run_id]))

    def get_model_version_by_alias(self, name, alias):
        assert alias == "champion"
        if self.champion is None:  # what the MLflow server answers for a missing alias (or a failure)
            from mlflow.exceptions import MlflowException
            from mlflow.protos import databricks_pb2

            raise MlflowException(f"alias {alias} on {name}", error_code=getattr(databricks_pb2, self.alias_error))
        return SimpleNamespace(version=self.champion)


TAGS = {"r1": {PIPELINE_RUN_ID_TAG: "kfp-old"}, "r2": {PIPELINE_RUN_ID_TAG: "kfp-new"}}


def test_gate_promoted_when_champion_is_our_version():
    client = FakeMlflow({"1": "r1", "2": "r2", "3": None}, TAGS, champion="2")
    assert submit.gate_result(client, "vega3d", "kfp-new") == {"version": "2", "promoted": True, "champion": "2"}


def test_gate_not_promoted_when_champion_stays():
    client = FakeMlflow({"1": "r1", "2": "r2"}, TAGS, champion="1")
    assert submit.gate_result(client, "vega3d", "kfp-new") == {"version": "2", "promoted": False, "champion": "1"}
    no_champion = FakeMlflow({"2": "r2"}, TAGS, champion=None)
    assert submit.gate_result(no_champion, "vega3d", "kfp-new")["promoted"] is False


def test_gate_does_not_read_a_server_failure_as_no_champion():
    from mlflow.exceptions import MlflowException

    failing = FakeMlflow({"2": "r2"}, TAGS, champion=None, alias_error="INTERNAL_ERROR")
    with pytest.raises(MlflowException, match="alias champion"):
        submit.gate_result(failing, "vega3d", "kfp-new")


def test_gate_of_an_unknown_run_is_an_error():
    with pytest.raises(submit.SubmitError, match="kfp-missing"):
        submit.gate_result(FakeMlflow({"1": "r1"}, TAGS, champion="1"), "vega3d", "kfp-missing")


def test_submit_command_prints_the_run_url(tmp_path, monkeypatch):
    package = tmp_path / "p.yaml"
    package.write_text("# PIPELINE DEFINITION\n")
    clients: list[FakeKfp] = []

    def fake_make_client(host, token, namespace):
        clients.append(FakeKfp(host=host, token=token))
        return clients[-1]

    monkeypatch.setattr(submit, "make_client", fake_make_client)
    app = typer.Typer()
    app.command()(submit_command)
    result = CliRunner().invoke(app, [str(package), "--host", "https://kfp.example.com", "--experiment", "ci",
                                      "--run-name", "r1", "-p", "preset=wan_t2v", "-p", "num_gpus=8", "--wait"],
                                env={"KFP_TOKEN": "t", "MLFLOW_TRACKING_URI": ""})
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["https://kfp.example.com/#/runs/details/run-42", "run run-42 succeeded"]
    (client,) = clients
    assert client.kwargs == {"host": "https://kfp.example.com", "token": "t"}
    assert client.created["arguments"] == {"preset": "wan_t2v", "num_gpus": 8}
    assert json.loads(json.dumps(client.created["experiment_name"])) == "ci"


def test_submit_command_fails_when_the_run_fails(tmp_path, monkeypatch):
    package = tmp_path / "p.yaml"
    package.write_text("x")
    monkeypatch.setattr(submit, "make_client", lambda host, token, namespace: FakeKfp(final_state="FAILED"))
    app = typer.Typer()
    app.command()(submit_command)
    result = CliRunner().invoke(app, [str(package), "--wait"], env={"MLFLOW_TRACKING_URI": ""})
    assert result.exit_code == 1 and "state FAILED" in result.output
