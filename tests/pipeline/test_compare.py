"""vega3d.compare against a real MLflow server: runs of an experiment side by side (table, plot, CLI)."""

import math
import uuid

import pytest
from PIL import Image
from typer.testing import CliRunner

from vega3d.cli import app
from vega3d.compare import DEFAULT_GROUPS, comparison_plot, comparison_table, fetch_runs
from vega3d.errors import UserError

pytestmark = pytest.mark.integration

METRICS = ["scanrefer/acc_iou25", "scanqa/cider"]
BY = list(DEFAULT_GROUPS)
TABLE = (
    "| run | generative.backbone | model.fusion | status | scanrefer/acc_iou25 | scanqa/cider |\n"
    "|---|---|---|---|---|---|\n"
    "| no-params | - | - | RUNNING | - | - |\n"
    "| baseline | none | none | FAILED | 35.00 | - |\n"
    "| wan-gated | wan_t2v | token_gated | FINISHED | 41.23 | 80.50 |\n"
)


@pytest.fixture(scope="module")
def experiment(mlflow_server):
    """An experiment with three pipeline parent runs and one stage child run; returns (url, name, run ids)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_server.url)
    name = f"compare-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name)
    start = 1_700_000_000_000

    def run(run_name, offset, params=None, metrics=(), tags=None, status=None):
        created = client.create_run(experiment_id, start_time=start + offset, run_name=run_name, tags=tags or {})
        run_id = created.info.run_id
        for key, value in (params or {}).items():
            client.log_param(run_id, key, value)
        for key, value, step in metrics:
            client.log_metric(run_id, key, value, step=step)
        if status:
            client.set_terminated(run_id, status=status)
        return run_id

    ids = {
        "no-params": run("no-params", 500),
        "wan-gated": run(
            "wan-gated", 1000, {"generative.backbone": "wan_t2v", "model.fusion": "token_gated"},
            [("scanrefer/acc_iou25", 10.0, 0), ("scanrefer/acc_iou25", 41.234, 1), ("scanqa/cider", 80.5, 0)],
            status="FINISHED",
        ),
        "baseline": run(
            "baseline", 2000, {"generative.backbone": "none", "model.fusion": "none"},
            [("scanrefer/acc_iou25", 35.0, 0)], status="FAILED",
        ),
    }
    ids["eval-scanrefer"] = run(
        "eval-scanrefer", 3000, {"generative.backbone": "wan_t2v"}, [("scanrefer/acc_iou25", 99.0, 0)],
        tags={"mlflow.parentRunId": ids["wan-gated"]}, status="FINISHED",
    )
    return mlflow_server.url, name, ids


def test_fetch_runs_parents_newest_first(experiment):
    url, name, ids = experiment
    runs = fetch_runs(url, name, METRICS, BY)
    assert [r.name for r in runs] == ["baseline", "wan-gated", "no-params"]  # the child run is left out
    baseline, wan, bare = runs
    assert (baseline.run_id, baseline.status, baseline.group) == (ids["baseline"], "FAILED", ("none", "none"))
    assert baseline.metrics["scanrefer/acc_iou25"] == 35.0 and math.isnan(baseline.metrics["scanqa/cider"])
    assert (wan.run_id, wan.status, wan.group) == (ids["wan-gated"], "FINISHED", ("wan_t2v", "token_gated"))
    assert wan.metrics == pytest.approx({"scanrefer/acc_iou25": 41.234, "scanqa/cider": 80.5})  # latest step
    assert (bare.status, bare.group) == ("RUNNING", ("-", "-"))
    assert all(math.isnan(v) for v in bare.metrics.values())


def test_fetch_runs_with_children(experiment):
    url, name, ids = experiment
    runs = fetch_runs(url, name, METRICS, ["generative.backbone"], include_children=True)
    assert [r.name for r in runs] == ["eval-scanrefer", "baseline", "wan-gated", "no-params"]
    assert runs[0].run_id == ids["eval-scanrefer"] and runs[0].group == ("wan_t2v",)
    assert runs[0].metrics["scanrefer/acc_iou25"] == 99.0


def test_fetch_runs_unknown_experiment(mlflow_server):
    with pytest.raises(UserError, match="'no-such-experiment' not found"):
        fetch_runs(mlflow_server.url, "no-such-experiment", METRICS, BY)


def test_comparison_table_rows(experiment):
    url, name, _ = experiment
    assert comparison_table(fetch_runs(url, name, METRICS, BY), METRICS, BY) == TABLE


def test_comparison_plot_writes_a_png(experiment, tmp_path):
    url, name, _ = experiment
    path = tmp_path / "plots" / "compare.png"
    comparison_plot(fetch_runs(url, name, METRICS, BY), METRICS, path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (720, 480)  # figsize (6, 4) inches at 120 dpi
        colours = {colour for _, colour in image.convert("RGB").getcolors(720 * 480)}
    assert {(31, 119, 180), (255, 127, 14)} <= colours  # bars in matplotlib's first two cycle colours
    assert [p.name for p in path.parent.iterdir()] == ["compare.png"]  # no temporary file left


def test_cli_compare_prints_the_table_and_writes_the_plot(experiment, tmp_path):
    url, name, _ = experiment
    plot = tmp_path / "cli.png"
    args = ["compare", "--tracking-uri", url, "--experiment", name, "-m", METRICS[0], "-m", METRICS[1],
            "--plot", str(plot)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert TABLE in result.output
    assert f"plot written to {plot}" in result.output
    with Image.open(plot) as image:
        assert image.format == "PNG"


def test_cli_compare_defaults_to_the_paper_columns(experiment, monkeypatch):
    url, name, _ = experiment
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    result = CliRunner().invoke(app, ["compare", "--experiment", name, "--by", "model.fusion"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        "| run | model.fusion | status | scanrefer/acc_iou25 | scanrefer/acc_iou50 | multi3drefer/f1_iou25 | "
        "multi3drefer/f1_iou50 | scan2cap/cider_iou50 | scan2cap/bleu4_iou50 | scanqa/cider | scanqa/em | sqa3d/em |"
    )
    assert "| wan-gated | token_gated | FINISHED | 41.23 | - | - | - | - | - | 80.50 | - | - |" in lines


def test_cli_compare_unknown_experiment_exits_2(mlflow_server):
    result = CliRunner().invoke(app, ["compare", "--tracking-uri", mlflow_server.url, "--experiment", "nope-xyz"])
    assert result.exit_code == 2
    assert "MLflow experiment 'nope-xyz' not found" in " ".join(result.output.split())


def test_cli_compare_needs_a_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(app, ["compare"])
    assert result.exit_code == 2
    assert "give --tracking-uri or set MLFLOW_TRACKING_URI" in " ".join(result.output.split())
