"""The report table and the MLflow hook."""

import io
import json

import pytest
from rich.console import Console

from tests.evaluation.helpers import make_split
from vega3d.evaluation import mlflow_log, report, tasks
from vega3d.evaluation.predictions import validate_predictions

OURS = {"scanrefer": {"acc_iou25": 61.04, "acc_iou50": 50.0}, "sqa3d": {"em": 12.345}}


def test_markdown_table_paper_column_order():
    text = report.format_markdown(OURS, name="tiny")
    lines = text.strip().splitlines()
    assert lines[0] == ("| method | ScanRefer Acc@.25 | ScanRefer Acc@.5 | Multi3DRefer F1@.25 | Multi3DRefer F1@.5 | "
                        "Scan2Cap C@.5 | Scan2Cap B-4@.5 | ScanQA CIDEr | ScanQA EM | SQA3D EM |")
    assert lines[2] == "| tiny | 61.0 | 50.0 | - | - | - | - | - | - | 12.3 |"
    assert lines[3] == "| VEGA-3D (paper) | 63.2 | 56.2 | 60.8 | 55.1 | 83.2 | 42.2 | 106.3 | 30.4 | 61.3 |"
    assert lines[4] == "| Video-3D-LLM (paper) | 58.1 | 51.7 | 58.0 | 52.7 | 83.8 | 41.3 | 102.1 | 30.1 | 58.6 |"


def test_rich_table_prints_all_rows():
    buffer = io.StringIO()
    report.print_table(OURS, console=Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "61.0" in text and "106.3" in text and "Video-3D-LLM (paper)" in text


def test_log_eval_result_into_a_run(tmp_path):
    from mlflow.tracking import MlflowClient

    from vega3d.tracking import Tracker

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("eval", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    records, _ = make_split("scanrefer", 8, seed=0)
    pset = validate_predictions("scanrefer", [r["id"] for r in records],
                                [(None, p) for p in tasks.oracle_predictions("scanrefer", records)])
    result = tasks.score("scanrefer", records, pset, tasks.ScoreSettings(meteor=False))
    mlflow_log.log_eval_result(Tracker(uri, safe=False), run_id, result, sample_size=5)
    metrics = client.get_run(run_id).data.metrics
    assert metrics["scanrefer/acc_iou50"] == pytest.approx(100.0)
    kinds = {r["eval_type"] for r in records}
    assert {f"scanrefer/{k}/acc_iou25" for k in kinds} <= set(metrics)
    tags = client.get_run(run_id).data.tags  # counts are tags, not metrics
    assert tags["scanrefer/num_records"] == "8" and tags["scanrefer/num_problems"] == "0"
    assert not [k for k in metrics if k.rsplit("/", 1)[-1].startswith("num_")]
    local = client.download_artifacts(run_id, "eval/scanrefer", str(tmp_path / "dl"))
    assert json.load(open(f"{local}/breakdown.json")) == result.breakdown
    table = json.load(open(f"{local}/samples.json"))
    assert table["columns"][:2] == ["id", "eval_type"] and len(table["data"]) == 5
    assert [row[0] for row in table["data"]] == [r["id"] for r in records[:5]]
