"""Reading what `vega3d pipeline run` and `vega3d demo` print: status lines and the run's own lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

# ok      evaluate scanqa          31.0 s  /path/logs/07-evaluate.log   (pipelines.step_logs)
STATUS = re.compile(r"^(ok|FAILED)\s+(\S+)(?: (\w+))?\s+[\d.]+ s\s+(\S+\.log)$")
HEADER = re.compile(r"^run (local-\w+): one line per finished step; each step's full log in (\S+)$")
ANSI_ESCAPE = "\x1b["


def statuses(stdout: str) -> list[re.Match]:
    """The status lines of an output, in order (groups: word, step, benchmark, log path)."""
    return [found for line in stdout.splitlines() if (found := STATUS.match(line))]


def pipeline_run(*args: str, cwd: Path, timeout: float = 1500) -> subprocess.CompletedProcess:
    """``vega3d pipeline run ARGS`` as an operator runs it from a shell, output captured (not a terminal)."""
    command = [sys.executable, "-m", "vega3d.cli", "pipeline", "run", *args]
    env = {key: value for key, value in os.environ.items() if key != "VEGA3D_VERBOSITY"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=cwd)
