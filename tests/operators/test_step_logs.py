"""kfp.local's interleaved output split into one file per step, one status line per step."""

from __future__ import annotations

import io
import threading

from pipelines.step_logs import StepLogs

CYAN, GREEN, RED, RESET = "\033[96m", "\033[92m", "\033[91m", "\033[0m"


def _task(out: StepLogs, name: str, lines: list[str], status: str | None, output: str = "") -> None:
    out.write(f"12:00:00.000 - INFO - Executing task {CYAN}'{name}'{RESET}\n")
    out.write("12:00:00.001 - INFO - Streamed logs:\n\n")
    for line in lines:
        out.write("    ")  # kfp indents the step's own lines with a separate print
        out.write(line + "\n")
    if status is None:
        return  # the step failed and kfp raised: no "finished" line
    colour = GREEN if status == "SUCCESS" else RED
    out.write(f"12:00:01.000 - INFO - Task {CYAN}'{name}'{RESET} finished with status {colour}{status}{RESET}\n")
    if output:
        out.write(f"12:00:01.001 - INFO - Task '{name}' outputs:\n    Output: '{output}'\n")
    out.write("-" * 80 + "\n")


def test_parallel_steps_get_their_own_files_and_one_status_line_each(tmp_path):
    status = io.StringIO()
    out = StepLogs(tmp_path, status)
    out.write("12:00:00.000 - INFO - Running pipeline: vega3d\n" + "-" * 80 + "\n")
    _task(out, "prep", ["INFO prep scenes: 3/3", "done"], "SUCCESS")
    threads = [
        threading.Thread(target=_task, args=(out, "evaluate", [f"evaluate: benchmark {task}"] + [f"{task} {i}" for i in range(200)],
                                             "SUCCESS", f'{{"task": "{task}", "em": 1.0}}'))
        for task in ("scanqa", "sqa3d")
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _task(out, "train", ["Traceback (most recent call last):", "RuntimeError: boom"], None)
    out.close()

    lines = status.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].split()[:2] == ["ok", "prep"] and lines[0].endswith(str(tmp_path / "01-prep.log"))
    assert sorted(line.split()[2] for line in lines[1:3]) == ["scanqa", "sqa3d"]
    assert lines[3].split()[:2] == ["FAILED", "train"] and lines[3].endswith(str(tmp_path / "04-train.log"))
    for line in lines[1:3]:  # each evaluation's file holds its own 200 lines and none of the other's
        task, path = line.split()[2], line.split()[-1]
        text = open(path).read()
        assert sum(1 for row in text.splitlines() if row.strip().startswith(f"{task} ")) == 200
        assert ({"scanqa", "sqa3d"} - {task}).pop() + " 0" not in text
    assert "RuntimeError: boom" in (tmp_path / "04-train.log").read_text()
    assert "\033[" not in (tmp_path / "01-prep.log").read_text()
    assert "Running pipeline: vega3d" in (tmp_path / "pipeline.log").read_text()


def test_a_step_that_wrote_its_output_is_ok_without_its_finished_line(tmp_path):
    """In a ParallelFor kfp.local may print a task's "finished" line from another thread (seen in the demo)."""
    status = io.StringIO()
    out = StepLogs(tmp_path, status)
    _task(out, "evaluate", ["evaluate: benchmark sqa3d", "Wrote executor output file to /x/executor_output.json."],
          None)
    _task(out, "train", ["Traceback (most recent call last):", "RuntimeError: boom"], None)
    out.close()
    words = [line.split()[:3] for line in status.getvalue().splitlines()]
    assert words == [["ok", "evaluate", "sqa3d"], ["FAILED", "train", "0.0"]]


def test_a_step_is_reported_when_it_wrote_its_output_not_when_the_run_ends(tmp_path):
    """kfp.local may log a ParallelFor task's "finished" line through another thread's handler (seen in a run: it
    landed in the command's own log), so the status line comes from the executor's last line."""
    status = io.StringIO()
    out = StepLogs(tmp_path, status)
    lines = ['            "task": "sqa3d",', "Wrote executor output file to /x/for-loop-8-iteration-4/evaluate/out.json."]
    thread = threading.Thread(target=_task, args=(out, "evaluate", lines, None))
    thread.start()
    thread.join()
    assert status.getvalue().split()[:3] == ["ok", "evaluate", "sqa3d"]  # before the next step and the end
    _task(out, "report", ["done"], "SUCCESS")
    out.close()
    assert [line.split()[:2] for line in status.getvalue().splitlines()] == [["ok", "evaluate"], ["ok", "report"]]
    assert (tmp_path / "01-evaluate.log").read_text().count("Wrote executor output") == 1
