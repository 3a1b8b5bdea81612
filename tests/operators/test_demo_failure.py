"""`vega3d demo` when a pipeline step fails: the failed step's log tail, then the one error/fix pair (the same
output as `vega3d pipeline run`). The run itself is replaced by one raising the failure; the real failure path
through kfp.local is tests/operators/test_pipeline_run.py."""

from __future__ import annotations

from typer.testing import CliRunner

from vega3d.cli import app
from vega3d.errors import PipelineFailed


def test_a_failed_demo_shows_the_step_log_tail_and_one_error(tmp_path, monkeypatch):
    log = tmp_path / "logs" / "03-prep.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(30)))

    def failing_run(*args, **kwargs):
        raise PipelineFailed("pipeline run local-1 failed: prep", f"see the step's log: {log}", [log])

    monkeypatch.setattr("vega3d.testing.demo.run_demo", failing_run)
    result = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    start = lines.index(f"last 20 lines of {log}:")
    assert lines[start + 1:] == [f"    line {i}" for i in range(10, 30)]
    assert result.stderr.splitlines() == ["error: pipeline run local-1 failed: prep",
                                          f"  fix: see the step's log: {log}"]
