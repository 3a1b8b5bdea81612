"""One log format, -v/-q levels, and progress that is a bar on a terminal and a few lines elsewhere."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys

from vega3d import logs

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (INFO|WARNING|DEBUG|ERROR) +[\w.]+: ")


def test_verbosity_levels_and_one_format():
    stream = io.StringIO()
    logs.setup_logging(-1, stream)
    logging.getLogger("vega3d.x").info("hidden")
    logging.getLogger("vega3d.x").warning("shown")
    logs.setup_logging(1, stream)
    logging.getLogger("vega3d.x").debug("debug shown")
    logs.setup_logging(0, stream)
    lines = stream.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["shown", "debug shown"]
    assert all(LINE.match(line) for line in lines), lines
    assert len([h for h in logging.getLogger().handlers if isinstance(h, logs._OurHandler)]) == 1


def test_progress_off_a_terminal_logs_a_line_per_interval_not_per_update(caplog):
    caplog.set_level(logging.INFO, logger="vega3d.progress")
    for _ in logs.progress(range(5000), desc="train", unit="step", interval=3600):
        pass
    lines = [r.getMessage() for r in caplog.records if r.name == "vega3d.progress"]
    # the first refresh and the final one on close: two lines for 5,000 updates
    assert len(lines) == 2, lines
    assert lines[-1].startswith("train: 5000/5000 step (100%)")
    assert "\r" not in "".join(lines)


def test_flags_after_the_command_move_to_the_front():
    assert logs.hoist_verbosity_flags(["train", "--preset", "tiny", "-v"]) == ["-v", "train", "--preset", "tiny"]
    assert logs.hoist_verbosity_flags(["data", "check", "-q", "--", "-v"]) == ["-q", "data", "check", "--", "-v"]


def test_quiet_command_prints_nothing_but_its_result(tmp_path):
    command = [sys.executable, "-m", "vega3d.cli", "data", "synth", "--data-root", str(tmp_path / "d"), "--num-train",
               "1", "--num-val", "1", "--num-test", "1", "--frames", "4", "--width", "40", "--height", "30"]
    quiet = subprocess.run([*command, "-q"], capture_output=True, text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.splitlines() == [f"wrote 3 synthetic scenes and the benchmark files under {tmp_path / 'd'}"]
    assert quiet.stderr == ""


def test_progress_off_a_terminal_ignores_refreshes_between_intervals(caplog):
    caplog.set_level(logging.INFO, logger="vega3d.progress")
    bar = logs.progress(total=10, desc="train", unit="step", interval=3600)
    for step in range(10):
        bar.update(1)
        bar.set_postfix(loss=1.0 / (step + 1))  # a refresh per step, as the trainer does
    bar.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "vega3d.progress"]
    assert len(lines) == 2 and lines[0].startswith("train: 0/10") and lines[1].startswith("train: 10/10 step (100%)")


def test_setup_logging_replaces_a_console_handler_in_another_format():
    foreign = logging.StreamHandler(sys.stdout)
    logging.getLogger().addHandler(foreign)
    logs.setup_logging(0)
    assert foreign not in logging.getLogger().handlers
