"""--checkpoint as an s3:// folder and as models:/<name>@champion, against real SeaweedFS and MLflow servers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.ask.helpers import scene_dir
from vega3d.ask.checkpoints import registry_source, resolve_checkpoint
from vega3d.ask.engine import AskEngine, AskRequest

pytestmark = pytest.mark.integration


@pytest.fixture
def published(loaded, mlflow_env, s3_prefix, tmp_path, monkeypatch):
    """The tiny model uploaded under s3_prefix and registered as vega3d-ask-test@champion; returns its URI."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from vega3d import staging
    from vega3d.model.loading import save_model

    monkeypatch.setenv("VEGA3D_CACHE", str(tmp_path / "cache"))
    local = tmp_path / "model"
    save_model(loaded[1], loaded[2], local)
    uri = f"{s3_prefix}/model"
    staging.stage_up(local, uri, sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()))
    client = MlflowClient(tracking_uri=mlflow_env.url)
    try:
        client.create_registered_model("vega3d-ask-test")
    except MlflowException:  # registered by an earlier test of this session (one MLflow server per session)
        pass
    version = client.create_model_version("vega3d-ask-test", uri)
    client.set_registered_model_alias("vega3d-ask-test", "champion", version.version)
    return uri, local


def test_registry_champion_resolves_to_its_s3_folder_and_answers_the_same(published, loaded, engine, mlflow_env,
                                                                          prepared_root):
    uri, local = published
    assert registry_source("models:/vega3d-ask-test@champion", mlflow_env.url) == uri
    staged = resolve_checkpoint("models:/vega3d-ask-test@champion", mlflow_env.url)
    def files(folder):
        return {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}

    assert files(staged) == files(local)
    remote = AskEngine.load(loaded[0], "models:/vega3d-ask-test@champion", mlflow_env.url)
    request = AskRequest(scene=str(scene_dir(prepared_root, "scene0002_00")), question="what is on the bed?")
    assert json.dumps(remote.ask([request])) == json.dumps(engine.ask([request]))
    with pytest.raises(ValueError, match="models:/<name>@<alias>"):
        resolve_checkpoint("models:/", mlflow_env.url)


def test_serve_prints_the_champion_storage_uri_for_the_manifest(published, mlflow_env):
    from typer.testing import CliRunner

    from vega3d.cli import app

    uri, _ = published
    result = CliRunner().invoke(app, ["serve", "--print-storage-uri", "--checkpoint", "models:/vega3d-ask-test@champion",
                                      "--tracking-uri", mlflow_env.url])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == uri
