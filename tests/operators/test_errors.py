"""User mistakes: two lines (what is wrong, how to fix it), exit code 2, no traceback unless -v."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from vega3d.cli import app
from vega3d.data.check import Problem
from vega3d.problem_report import ReportFormat, render_problems


def _run(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output.splitlines()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on exit: nothing listens there


FIX_ROOT = ("  fix: pass --data-root (or --set data.root=DIR) naming a folder in the ScanNet layout of SPEC.md "
            "section 5 (`vega3d data synth --data-root DIR` writes a synthetic one)")


def test_missing_data_root_names_the_root_not_a_checkpoint(tmp_path):
    code, lines = _run("train", "--preset", "tiny", "--set", f"data.root={tmp_path / 'nope'}")
    assert code == 2
    assert lines == [f"error: data root {tmp_path / 'nope'} does not exist", FIX_ROOT]


def test_wrong_data_root_says_what_is_missing(tmp_path):
    (tmp_path / "scannet").mkdir()
    code, lines = _run("eval", "scanqa", "--preset", "tiny", "--data-root", str(tmp_path))
    assert code == 2
    assert lines == [f"error: data root {tmp_path} is not a VEGA-3D data root: no processed/ folder",
                     f"  fix: run `vega3d data prep --data-root {tmp_path}` first (it writes processed/)"]


def test_wrong_data_root_without_the_raw_folders(tmp_path):
    (tmp_path / "processed").mkdir()
    code, lines = _run("eval", "scanqa", "--preset", "tiny", "--data-root", str(tmp_path))
    assert code == 2
    assert lines == [f"error: data root {tmp_path} is not a VEGA-3D data root: no scannet/ folder", FIX_ROOT]


def test_data_check_on_a_missing_root_prints_only_that(tmp_path):
    """Not a report with a count of invalid frames first: the one problem and its fix, exit 2 as for `train`."""
    code, lines = _run("data", "check", "--data-root", str(tmp_path / "nope"))
    assert code == 2
    assert lines == [f"error: data root {tmp_path / 'nope'} does not exist", FIX_ROOT]
    code, lines = _run("data", "check", "--data-root", str(tmp_path / "nope"), "--format", "json")
    assert (code, lines) == (2, [f"error: data root {tmp_path / 'nope'} does not exist", FIX_ROOT])


def test_unknown_pipeline_parameter_suggests_the_close_name():
    code, lines = _run("pipeline", "run", "-p", "fusoin=add", "-p", "max_steps=3")
    assert code == 2
    assert len(lines) == 2
    assert lines[0] == "error: unknown pipeline parameter 'fusoin' (did you mean 'fusion'?)"
    assert lines[1].startswith("  fix: use one of: preset, backbone, fusion,")


def test_unreachable_tracking_server_fails_before_any_step(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}"
    code, lines = _run("pipeline", "run", "-p", f"mlflow_uri={url}", "--pipeline-root", str(tmp_path / "kfp"))
    assert code == 2
    assert lines[0].startswith(f"error: MLflow tracking server at {url}/health does not answer (")
    assert lines[1] == "  fix: start it or fix -p mlflow_uri=..."
    assert not (tmp_path / "kfp").exists()  # no step ran


def test_compare_on_an_unreachable_server_fails_at_once():
    url = f"http://127.0.0.1:{_closed_port()}"
    code, lines = _run("compare", "--tracking-uri", url, "--experiment", "vega3d")
    assert code == 2
    assert lines[0].startswith(f"error: MLflow tracking server at {url}/health does not answer")
    assert lines[1] == "  fix: start it or fix --tracking-uri / MLFLOW_TRACKING_URI"


@pytest.mark.integration
def test_compare_lists_the_experiments_it_can_see(mlflow_server):
    from mlflow.tracking import MlflowClient

    MlflowClient(mlflow_server.url).create_experiment("seen-by-compare")
    code, lines = _run("compare", "--tracking-uri", mlflow_server.url, "--experiment", "nope-xyz")
    assert code == 2
    assert lines[0] == f"error: MLflow experiment 'nope-xyz' not found at {mlflow_server.url}"
    assert lines[1].startswith("  fix: pass --experiment with one of: ")
    assert "seen-by-compare" in lines[1].split("one of: ", 1)[1].split(", ")


def test_bad_preset_yaml_names_file_line_and_column(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("model:\n  fusion: [token_gated\n")
    code, lines = _run("train", "--preset", str(preset))
    assert code == 2
    assert lines[0] == (f"error: {preset}: not valid YAML at line 3, column 1 "
                        "(expected ',' or ']', but got '<stream end>'); fix the file")
    assert len(lines) == 2


def test_bad_preset_field_names_the_field(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("model:\n  fuson: add\n")
    code, lines = _run("train", "--preset", str(preset))
    assert code == 2
    assert lines == ["error: invalid configuration: model.fuson: Extra inputs are not permitted (got 'add')",
                     "  fix: fix the preset file or the --set value named above (`--help` lists them)"]


def test_traceback_only_with_verbose_even_after_the_command(tmp_path):
    command = [sys.executable, "-m", "vega3d.cli", "train", "--set", f"data.root={tmp_path}/nope"]
    quiet = subprocess.run(command, capture_output=True, text=True, timeout=120)
    loud = subprocess.run([*command, "-v"], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == loud.returncode == 2
    assert quiet.stderr.splitlines()[0] == f"error: data root {tmp_path}/nope does not exist"
    assert len(quiet.stderr.splitlines()) == 2 and "Traceback" not in quiet.stderr
    assert "Traceback (most recent call last)" in loud.stderr
    assert loud.stderr.splitlines()[-2] == f"error: data root {tmp_path}/nope does not exist"


PROBLEMS = [Problem("/very/long/" + "nested/" * 20 + "scene0000_00/frame_0010.png", "unreadable depth", "re-export"),
            Problem("/data/benchmark/scanqa/train.json", "no such scene scene0999_00", "remove the record")]


def test_problem_report_keeps_whole_paths_on_one_line_when_not_a_terminal(tmp_path):
    out = tmp_path / "report.txt"
    with out.open("w") as stream:
        render_problems(PROBLEMS, ReportFormat.auto, stream)
    lines = out.read_text().splitlines()
    assert lines == ["2 problem(s):",
                     f"{PROBLEMS[0].path}: unreadable depth (fix: re-export)",
                     "/data/benchmark/scanqa/train.json: no such scene scene0999_00 (fix: remove the record)"]


def test_problem_report_as_json(tmp_path):
    out = tmp_path / "report.json"
    with out.open("w") as stream:
        render_problems(PROBLEMS, ReportFormat.json, stream)
    assert json.loads(out.read_text())[0] == {"path": PROBLEMS[0].path, "problem": "unreadable depth",
                                              "fix": "re-export"}


def test_data_check_json_format(tmp_path):
    (tmp_path / "scannet").mkdir()
    (tmp_path / "benchmark").mkdir()  # a data root (vega3d.data.root) with every file missing
    result = CliRunner().invoke(app, ["data", "check", "--data-root", str(tmp_path), "--format", "json"])
    assert result.exit_code == 1
    rows = json.loads(result.stdout)
    assert rows and all(set(row) == {"path", "problem", "fix"} for row in rows)
    assert {"path": str(tmp_path / "metadata" / "scannetv2_train.txt"), "problem": "split list missing",
            "fix": "re-run `vega3d data synth` (synthetic root) or re-download the file"} in rows


def test_unreachable_tracking_server_when_logging_an_evaluation(tmp_path):
    (tmp_path / "processed").mkdir()
    url = f"http://127.0.0.1:{_closed_port()}"
    code, lines = _run("eval", "scanqa", "--data-root", str(tmp_path), "--predictions", str(tmp_path / "p.jsonl"),
                       "--mlflow-run-id", "abc", "--tracking-uri", url)
    assert code == 2
    assert lines == [f"error: MLflow tracking server {url} does not answer /health",
                     "  fix: start it or fix MLFLOW_TRACKING_URI"]
