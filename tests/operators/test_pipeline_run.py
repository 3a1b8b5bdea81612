"""`vega3d pipeline run` as an operator sees it when a step fails: one line per step, each step's full log in a
file, the failed step's log tail and one error/fix pair; `-v` streams kfp's whole output instead.

The cheapest real failure: an empty data root (its top folders and nothing in them) passes the run's
parameter check and setup-run and fails in prep, which lists every missing file (about 15 s through kfp.local's
subprocess runner, with the finalize exit handler after it). A root that does not exist at all is refused before
any step starts (tests/data/test_root.py). The successful run's output
is checked in tests/pipeline/test_local_pipeline.py (slow: it trains).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.operators.pipeline_output import ANSI_ESCAPE, HEADER, pipeline_run, statuses
from vega3d.data.check import check_data_root, format_problems
from vega3d.data.root import TOP_FOLDERS

# setup-run first, then prep and features-needed (both need only setup-run: either may start first), then the
# exit handler
STEPS = {"setup-run": "ok", "features-needed": "ok", "prep": "FAILED", "finalize": "ok"}


@pytest.fixture()
def broken_root_args(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # tracking off: no MLflow link expected
    monkeypatch.setenv("VEGA3D_CACHE", str(tmp_path / "cache"))
    for top in TOP_FOLDERS:
        (tmp_path / "empty" / top).mkdir(parents=True)
    return ["--data-root", str(tmp_path / "empty"), "--output", str(tmp_path / "store"),
            "--pipeline-root", str(tmp_path / "kfp")]


def test_failed_step_prints_its_status_its_log_tail_and_one_error(tmp_path, broken_root_args):
    result = pipeline_run(*broken_root_args, cwd=tmp_path, timeout=600)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    header = HEADER.match(lines[0])
    assert header, lines[0]
    run_id, log_dir = header.group(1), Path(header.group(2))
    assert log_dir == tmp_path / "logs" / run_id  # the default: <pipeline-root>/../logs/<run id>
    found = statuses(result.stdout)
    assert {m.group(2): m.group(1) for m in found} == STEPS and len(found) == 4
    assert lines[1:5] == [m.group(0) for m in found]
    # every step's log: its own file, numbered in start order, holding that step's output and no other step's
    logs = {m.group(2): Path(m.group(4)) for m in found}
    numbers = {step: int(path.name[:2]) for step, path in logs.items()}
    assert numbers["setup-run"] == 1 and numbers["finalize"] == 4
    assert {numbers["prep"], numbers["features-needed"]} == {2, 3}
    for step, path in logs.items():
        assert path.parent == log_dir and path.name[3:] == f"{step}.log"
        text = path.read_text()
        assert text.count("Executing task") == 1 and f"Executing task '{step}'" in text
        assert ANSI_ESCAPE not in text
    assert "Looking for component `setup_run`" in logs["setup-run"].read_text()
    assert "Task 'setup-run' finished with status SUCCESS" in logs["setup-run"].read_text()
    prep_log = logs["prep"].read_text()
    problems = check_data_root(tmp_path / "empty")  # what prep finds: every input file missing
    assert 2 <= len(problems) < 19  # the listing and the exception's line fit the 20-line tail
    assert f"PrepError: data root {tmp_path / 'empty'} has {len(problems)} problem(s)" in prep_log
    assert "Task 'prep' finished with status FAILURE" in prep_log
    assert '"state": "FAILED"' in logs["finalize"].read_text()  # the exit handler saw the failure
    assert "Running pipeline: 'vega3d'" in (log_dir / "pipeline.log").read_text()
    # the outcome: a blank line, the tail of prep's log (kfp's closing lines dropped), nothing else
    assert lines[5:7] == ["", f"last 20 lines of {logs['prep']}:"]
    tail = lines[7:]
    assert len(tail) == 20 and len(lines) == 27
    listing = [line.strip() for line in format_problems(problems).splitlines()]
    assert [line.strip() for line in tail[-len(listing):]] == listing
    assert tail[-len(listing) - 1].strip().startswith(
        f"vega3d.data.prep.PrepError: data root {tmp_path / 'empty'} has {len(problems)} problem(s)")
    assert [line.strip() for line in tail] == [line.strip() for line in prep_log.splitlines() if line.strip()][-22:-2]
    # one error/fix pair on stderr naming the step and its log; this process's own log went to run.log
    assert result.stderr.splitlines() == [f"error: pipeline run {run_id} failed: prep",
                                          f"  fix: see the step's log: {logs['prep']}"]
    assert "Skipping task train" in (log_dir / "run.log").read_text()
    assert ANSI_ESCAPE not in result.stdout + result.stderr


def test_verbose_streams_kfp_output_instead(tmp_path, broken_root_args):
    result = pipeline_run(*broken_root_args, "-v", cwd=tmp_path, timeout=600)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) > 300  # kfp's own lines and every step's output
    assert not statuses(result.stdout) and not HEADER.match(lines[0])
    expected = []
    for step, word in STEPS.items():
        expected += [f"Executing task '{step}'", f"Task '{step}' finished with status "
                     + ("SUCCESS" if word == "ok" else "FAILURE")]
    kfp_lines = [line.split(" - ", 2)[2] for line in lines if "Executing task" in line or "finished with status" in line]
    assert sorted(kfp_lines) == sorted(expected)
    assert kfp_lines[:2] == expected[:2] and kfp_lines[-2:] == expected[-2:]  # setup-run first, finalize last
    assert any(line.strip().startswith("vega3d.data.prep.PrepError: data root") for line in lines)
    assert ANSI_ESCAPE not in result.stdout  # kfp's colours only on a terminal
    assert not (tmp_path / "logs").exists()
    assert result.stderr.splitlines()[-2].startswith("error: pipeline run local-")
    assert "Traceback (most recent call last)" in result.stderr  # -v adds the traceback


def test_outcome_shows_the_report_only_for_an_evaluated_run_and_links_only_with_tracking(tmp_path, monkeypatch):
    from pipelines.outcome import run_outcome
    from vega3d import storage
    from vega3d.params import pipeline_overrides
    from vega3d.runs import resolve_run_config

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    params = {"preset": "tiny", "max_steps": 4, "storage_root": str(tmp_path / "store"), "data_uri": str(tmp_path)}
    overrides = ["train.max_steps=4", "train.nproc=1"]  # num_gpus: the pipeline's default 1
    assert pipeline_overrides(params) == overrides
    cfg = resolve_run_config("tiny", overrides, params["storage_root"], params["data_uri"])
    storage.write_text(storage.join(cfg.eval.output_uri, "report.md"), "| method | x |\n| ours | 1.0 |\n")
    assert run_outcome(params, "local-1").text() == "\n| method | x |\n| ours | 1.0 |\n"
    assert run_outcome({**params, "run_eval": False}, "local-1").text() == ""  # -p run_eval=false: no table
    assert run_outcome(params, "local-1", succeeded=False).text() == ""
    assert run_outcome({**params, "max_steps": 5}, "local-1").text() == ""  # another config: another folder
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path / 'mlruns'}")  # not a server: no UI to link
    assert run_outcome(params, "local-1").text() == "\n| method | x |\n| ours | 1.0 |\n"


@pytest.mark.parametrize(("args", "error"), [
    (["--set", "model.fusionx=3"], "error: invalid configuration: model.fusionx: Extra inputs are not permitted (got 3)"),
    (["-p", "max_steps=abc"], "error: parameter max_steps='abc': expected int (train.max_steps)"),
])
def test_a_setting_the_config_refuses_stops_the_run_before_any_step(tmp_path, monkeypatch, args, error):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = pipeline_run(*args, "--pipeline-root", str(tmp_path / "kfp"), cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == error and lines[1].startswith("  fix: ") and len(lines) == 2
    assert result.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written
