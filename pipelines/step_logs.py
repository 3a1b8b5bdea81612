"""Each step's log in its own file and one status line per step, for pipelines run by kfp.local.

kfp.local prints everything on stdout: its own lines ("Executing task 'prep'", "Task 'prep' finished with
status SUCCESS", the outputs, a line of dashes) and, indented, every line the step's subprocess writes. Steps
of a ParallelFor run in worker threads at the same time, each printing from its own thread. ``StepLogs``
stands in for stdout while the pipeline runs: it keeps one file per step (``<n>-<task>.log``, in start order),
puts kfp's lines outside any step into ``pipeline.log``, and writes one line per finished step to the real
stdout::

    ok      prep                  14.2 s  .demo/logs/02-prep.log
    ok      evaluate scanqa       31.0 s  .demo/logs/07-evaluate.log
    FAILED  train                  3.1 s  .demo/logs/04-train.log
"""

from __future__ import annotations

import io
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
STARTED = re.compile(r"Executing task '([^']+)'")
FINISHED = re.compile(r"Task '([^']+)' finished with status (\w+)")
SEPARATOR = re.compile(r"^-{20,}$")
# The executor writes its output file only after the step's function returned (kfp.dsl.executor).
WROTE_OUTPUT = re.compile(r"Wrote executor output file")
# An evaluation step names its benchmark in its first log line ("evaluate: benchmark scanqa", vega3d.stages)
# and in its output ('{"task": "scanqa", ...}').
BENCHMARK = re.compile(r'evaluate: benchmark (\w+)|\\?"task\\?": \\?"(\w+)')


@dataclass
class _Step:
    task: str
    path: Path
    handle: IO[str]
    started: float = field(default_factory=time.perf_counter)
    status: str | None = None
    seconds: float = 0.0
    detail: str = ""
    reported: bool = False


class StepLogs(io.TextIOBase):
    """A stdout replacement that splits kfp.local's output into per-step files (see the module docstring)."""

    def __init__(self, log_dir: str | Path, status: IO[str]) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.status = status
        self.pipeline_log_path = self.log_dir / "pipeline.log"  # kfp's lines outside any step
        self.pipeline_log = self.pipeline_log_path.open("a")
        self.steps: list[_Step] = []
        self._current: dict[int, _Step] = {}
        self._partial: dict[int, str] = {}
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        thread = threading.get_ident()
        with self._lock:
            buffered = self._partial.pop(thread, "") + text
            *lines, rest = buffered.split("\n")
            if rest:
                self._partial[thread] = rest
            for line in lines:
                self._line(thread, line)
        return len(text)

    def _line(self, thread: int, raw: str) -> None:
        line = ANSI.sub("", raw)
        plain = line.strip()
        started = STARTED.search(plain)
        if started:
            self._finish_block(thread)
            name = f"{len(self.steps) + 1:02d}-{started.group(1)}.log"
            step = _Step(started.group(1), self.log_dir / name, (self.log_dir / name).open("w"))
            self.steps.append(step)
            self._current[thread] = step
        step = self._current.get(thread)
        target = step.handle if step else self.pipeline_log
        target.write(line + "\n")
        if step is None:
            return
        if WROTE_OUTPUT.search(plain):  # the step's function returned
            self._settle(step, "SUCCESS")
        finished = FINISHED.search(plain)
        if finished and finished.group(1) == step.task:
            self._settle(step, finished.group(2))
        elif step.task == "evaluate" and not step.detail and BENCHMARK.search(line):
            found = BENCHMARK.search(line)
            step.detail = found.group(1) or found.group(2)
        elif step.status and SEPARATOR.match(plain):
            self._finish_block(thread)

    def _finish_block(self, thread: int) -> None:
        step = self._current.pop(thread, None)
        if step is None:
            return
        step.handle.close()
        if step.status is None:  # neither its output nor a "finished" line: it failed and kfp raised
            step.status, step.seconds = "FAILURE", time.perf_counter() - step.started
        if not step.reported:
            self._report(step)

    def _settle(self, step: _Step, status: str) -> None:
        """Record the step's outcome and report it at once: in a ParallelFor, kfp.local may print the rest of
        the step's block (its "finished" line, the separator) from another thread, much later or not at all."""
        if step.status is None:
            step.seconds = time.perf_counter() - step.started
        step.status = status
        if not step.reported and (step.detail or step.task != "evaluate"):  # else the benchmark comes later
            self._report(step)

    def _report(self, step: _Step) -> None:
        step.reported = True
        word = "ok" if step.status == "SUCCESS" else "FAILED"
        name = f"{step.task} {step.detail}".strip()
        self.status.write(f"{word:<7} {name:<22} {step.seconds:6.1f} s  {step.path}\n")
        self.status.flush()

    def close(self) -> None:
        """Report steps still open (a failed step stops kfp before its "finished" line) and close the files."""
        with self._lock:
            for thread in list(self._current):
                self._finish_block(thread)
            self.pipeline_log.close()
        super().close()

    def failed(self) -> list[_Step]:
        """The steps that did not succeed."""
        return [step for step in self.steps if step.status != "SUCCESS"]


class PlainText(io.TextIOBase):
    """A stdout replacement that drops kfp.local's colour codes (for output that is not a terminal)."""

    def __init__(self, target: IO[str]) -> None:
        super().__init__()
        self.target = target

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.target.write(ANSI.sub("", text))
        return len(text)

    def flush(self) -> None:
        self.target.flush()
