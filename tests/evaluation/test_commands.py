"""`vega3d eval` scoring given predictions (no model needed)."""

import json

from typer.testing import CliRunner

from tests.evaluation.helpers import make_split
from vega3d.cli import app
from vega3d.data.layout import DataLayout
from vega3d.evaluation import tasks
from vega3d.evaluation.predictions import write_jsonl

RUNNER = CliRunner()


def write_root(root, names):
    layout = DataLayout(root)
    records = {}
    for task in names:
        recs, _ = make_split(task, 20, seed=7)
        path = layout.processed_path(task, tasks.DEFAULT_SPLITS[task])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(recs))
        records[task] = recs
    return records


def test_eval_all_scores_given_predictions_and_writes_report(tmp_path):
    records = write_root(tmp_path / "data", tasks.TASKS)
    preds = tmp_path / "preds"
    for task, recs in records.items():
        rows = tasks.oracle_predictions(task, recs)
        if task == "sqa3d":
            rows[0] = {"id": rows[0]["id"], "answer": "definitely wrong"}
        write_jsonl(str(preds / task / "predictions.jsonl"), rows)
    out = tmp_path / "out"
    result = RUNNER.invoke(app, ["eval", "all", "--data-root", str(tmp_path / "data"), "--predictions", str(preds),
                                 "--output-uri", str(out), "--no-meteor"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "scanrefer" / "metrics.json").read_text())["acc_iou50"] == 100.0
    assert json.loads((out / "sqa3d" / "metrics.json").read_text())["em"] == 95.0
    report_lines = (out / "report.md").read_text().splitlines()
    assert report_lines[2].startswith("| tiny | 100.0 | 100.0 | 100.0 | 100.0 |")
    assert report_lines[2].endswith("| 100.0 | 95.0 |")


def test_eval_reports_malformed_predictions_with_ids(tmp_path):
    records = write_root(tmp_path / "data", ["scanrefer"])["scanrefer"]
    rows = tasks.oracle_predictions("scanrefer", records)
    rows[3]["box"] = [float("nan")] * 6
    del rows[5]["id"]
    path = tmp_path / "p.jsonl"
    write_jsonl(str(path), rows)
    common = ["eval", "scanrefer", "--data-root", str(tmp_path / "data"), "--predictions", str(path),
              "--output-uri", str(tmp_path / "out")]
    strict = RUNNER.invoke(app, [*common, "--strict"])
    assert strict.exit_code != 0
    assert records[3]["id"] in str(strict.exception) and "NaN" in str(strict.exception)
    lenient = RUNNER.invoke(app, common)
    assert lenient.exit_code == 0, lenient.output
    problems = json.loads((tmp_path / "out" / "scanrefer" / "problems.json").read_text())
    assert {(p["id"], p["line"]) for p in problems} == {(records[3]["id"], 4), (None, 6)}
    metrics = json.loads((tmp_path / "out" / "scanrefer" / "metrics.json").read_text())
    assert metrics["acc_iou25"] == 90.0 and metrics["num_missing"] == 2


def test_eval_rejects_unknown_task():
    result = RUNNER.invoke(app, ["eval", "nope"])
    assert result.exit_code != 0 and "unknown task" in result.output


def test_a_non_utf8_byte_is_one_problem_and_a_lenient_eval_goes_on(tmp_path):
    records = write_root(tmp_path / "data", ["scanqa"])["scanqa"]
    rows = tasks.oracle_predictions("scanqa", records)
    lines = [json.dumps(row).encode() for row in rows]
    lines[2] = lines[2].replace(b'"answer": "', b'"answer": "\xff', 1)  # a Latin-1 byte in a UTF-8 file
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    common = ["eval", "scanqa", "--data-root", str(tmp_path / "data"), "--predictions", str(path),
              "--output-uri", str(out), "--no-meteor"]
    lenient = RUNNER.invoke(app, common)
    assert lenient.exit_code == 0, lenient.output
    (problem,) = json.loads((out / "scanqa" / "problems.json").read_text())
    assert problem["line"] == 3 and "not valid UTF-8 (byte 0xff" in problem["message"]
    metrics = json.loads((out / "scanqa" / "metrics.json").read_text())
    assert metrics["num_missing"] == 1 and metrics["em"] == 95.0  # 19 of 20 oracle answers


def test_an_empty_predictions_file_fails_strict(tmp_path):
    records = write_root(tmp_path / "data", ["sqa3d"])["sqa3d"]
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    common = ["eval", "sqa3d", "--data-root", str(tmp_path / "data"), "--predictions", str(path),
              "--output-uri", str(tmp_path / "out")]
    strict = RUNNER.invoke(app, [*common, "--strict"])
    assert strict.exit_code != 0
    assert "20 malformed prediction(s)" in str(strict.exception)
    assert f"id {records[0]['id']!r}: no prediction for this record" in str(strict.exception)
    assert RUNNER.invoke(app, common).exit_code == 0  # lenient: scored as misses, with a warning


def test_an_answer_with_invalid_unicode_is_a_problem(tmp_path):
    records = write_root(tmp_path / "data", ["scanqa"])["scanqa"]
    rows = tasks.oracle_predictions("scanqa", records)
    lines = [json.dumps(row) for row in rows]
    lines[0] = lines[0].replace('"answer": "', '"answer": "\\ud800', 1)  # valid JSON, not encodable text
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    result = RUNNER.invoke(app, ["eval", "scanqa", "--data-root", str(tmp_path / "data"), "--predictions",
                                 str(path), "--output-uri", str(out), "--no-meteor"])
    assert result.exit_code == 0, result.output
    (problem,) = json.loads((out / "scanqa" / "problems.json").read_text())
    assert problem["id"] == records[0]["id"] and "invalid Unicode" in problem["message"]
