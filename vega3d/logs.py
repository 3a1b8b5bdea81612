"""One log format for the CLI, the pipeline steps and the training ranks; progress that suits where it goes.

- ``setup_logging(verbosity)``: one handler on stderr with ``LOG_FORMAT``; -1 = warnings only (``-q``),
  0 = info, 1+ = debug (``-v``). The level is exported in ``VEGA3D_VERBOSITY`` so child processes (torchrun
  ranks, pipeline steps) log the same way; ``setup_logging()`` without an argument reads it back.
- ``progress(...)``: a tqdm bar on a terminal; elsewhere (a pipeline step, a pod, a file) one log line
  every ``interval`` seconds instead of a carriage-return refresh per update, which a log collector turns into
  one line each (the demo's log was 6,667 such lines).
- ``silence_known_warnings()``: third-party warnings that say nothing to our users, each with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
VERBOSITY_ENV = "VEGA3D_VERBOSITY"
STATUS_INTERVAL_S = 30.0
VERBOSE_FLAGS = {"-v": 1, "--verbose": 1, "-vv": 2, "-q": -1, "--quiet": -1}

logger = logging.getLogger("vega3d.progress")

# Chatty third-party loggers: their INFO lines repeat what our own status lines say (or are internals).
QUIET_LOGGERS = {
    "botocore": logging.WARNING,
    "urllib3": logging.WARNING,
    "alembic": logging.WARNING,  # MLflow's database migrations at every client start
    "kfp.local": logging.WARNING,
    "DeepSpeed": logging.WARNING,  # one INFO block per engine and per checkpoint
    "torch.distributed": logging.WARNING,
    "httpx": logging.WARNING,
    "mlflow.system_metrics": logging.WARNING,  # "Started/Stopping monitoring" per run
}


def level_for(verbosity: int) -> int:
    """-1 (``-q``) -> WARNING, 0 -> INFO, 1 or more (``-v``) -> DEBUG."""
    if verbosity < 0:
        return logging.WARNING
    return logging.INFO if verbosity == 0 else logging.DEBUG


def current_verbosity() -> int:
    """The verbosity this process (or its parent) was set up with (0 when unset)."""
    try:
        return int(os.environ.get(VERBOSITY_ENV, "0"))
    except ValueError:
        return 0


class _OurHandler(logging.StreamHandler):
    """The handler ``setup_logging`` installs (recognised so a second call replaces it).

    Without a stream it writes to whatever ``sys.stderr`` is at the time of each record (test runners swap it).
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        self._follow_stderr = stream is None

    def emit(self, record: logging.LogRecord) -> None:
        if self._follow_stderr:
            self.stream = sys.stderr
        super().emit(record)


def _is_console(handler: logging.Handler) -> bool:
    """A plain stream handler on stdout/stderr that someone else installed (e.g. ``logging.basicConfig``)."""
    return type(handler) is logging.StreamHandler and handler.stream in (sys.stdout, sys.stderr)


def setup_logging(verbosity: int | None = None, stream: IO[str] | None = None) -> None:
    """Configure the root logger with the project's one format at ``verbosity`` (see the module docstring)."""
    verbosity = current_verbosity() if verbosity is None else verbosity
    os.environ[VERBOSITY_ENV] = str(verbosity)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _OurHandler) or _is_console(h)]:
        root.removeHandler(handler)  # ours from an earlier call; a console one (kfp's executor) in its format
    handler = _OurHandler(stream)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    root.addHandler(handler)
    root.setLevel(level_for(verbosity))
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level if verbosity < 1 else logging.DEBUG)
    silence_known_warnings()


def ensure_logging() -> None:
    """``setup_logging()`` unless this process already set logging up (then its choices stay)."""
    if not any(isinstance(h, _OurHandler) for h in logging.getLogger().handlers):
        setup_logging()


@contextlib.contextmanager
def log_to_file(path: str | Path, console_level: int = logging.WARNING) -> Iterator[Path]:
    """Send this process's log to ``path`` (at the configured level) while the console shows only
    ``console_level`` and above; restored on exit."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_logging()
    root = logging.getLogger()
    file_handler = logging.FileHandler(path)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT, DATE_FORMAT))
    consoles = [h for h in root.handlers if isinstance(h, _OurHandler)]
    levels = [h.level for h in consoles]
    for handler in consoles:
        handler.setLevel(max(console_level, handler.level))
    root.addHandler(file_handler)
    try:
        yield path
    finally:
        root.removeHandler(file_handler)
        file_handler.close()
        for handler, level in zip(consoles, levels, strict=True):
            handler.setLevel(level)


def silence_known_warnings() -> None:
    """Silence third-party output that every run prints and that no user can act on (each with the reason)."""
    # kfp.local warns about custom base images on every task; our images hold exactly the package that runs.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task that uses custom")
    # MLflow prints "View run <name> at: <url>" with emojis whenever a run ends; our status lines link the runs.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if not is_terminal():
        # transformers' and huggingface_hub's own bars ("Writing model shards") redraw with carriage returns
        # that a log turns into lines; our status lines report the work that matters.
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # DeepSpeed warns "Setting accelerator to CPU" on every import without a GPU; naming the accelerator
    # is its documented way to say so (CUDA machines keep auto-detection).
    if not os.path.exists("/dev/nvidia0") and not os.environ.get("CUDA_VISIBLE_DEVICES"):
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def is_terminal(stream: IO[str] | None = None) -> bool:
    """Whether ``stream`` (default stderr, where bars go) is an interactive terminal."""
    stream = stream or sys.stderr
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    disable: bool = False,
    interval: float = STATUS_INTERVAL_S,
) -> Any:
    """A tqdm bar on a terminal; one INFO status line every ``interval`` seconds otherwise (same API)."""
    from tqdm import tqdm

    if is_terminal():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, dynamic_ncols=True)
    return _status_line_bar()(
        iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, mininterval=interval,
        file=_Discard(),  # every rendering goes to the log; tqdm's own newlines and clears go nowhere
        maxinterval=max(interval, 10.0), bar_format="{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) "
        "elapsed {elapsed}, left {remaining}, {rate_fmt}{postfix}",
    )  # fmt: skip


class _Discard:
    """A text stream that drops what is written to it."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None


def _status_line_bar() -> type:
    """The tqdm subclass that logs its rendering as one line instead of redrawing a bar."""
    from tqdm import tqdm

    class StatusLineBar(tqdm):
        """tqdm that logs one line at most every ``mininterval`` seconds (and at the end) instead of redrawing;
        ``set_postfix`` and other refreshes in between are not logged."""

        def display(self, msg: str | None = None, pos: int | None = None) -> bool:
            now = time.monotonic()
            finished = self.total is not None and self.n >= self.total
            due = now - getattr(self, "_logged_at", -math.inf) >= self.mininterval
            if (due or finished or getattr(self, "_closing", False)) and self.n != getattr(self, "_logged_n", None):
                logger.info("%s", msg or self.format_meter(**self.format_dict))
                self._logged_n, self._logged_at = self.n, now
            return True

        def close(self) -> None:
            self._closing = True
            super().close()

    return StatusLineBar


def hoist_verbosity_flags(argv: list[str]) -> list[str]:
    """Move ``-v/-vv/--verbose/-q/--quiet`` from anywhere in ``argv`` to the front (the root callback's place),
    so ``vega3d train -v`` means the same as ``vega3d -v train``. Nothing after ``--`` moves."""
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut:]
    else:
        head, tail = argv, []
    flags = [arg for arg in head if arg in VERBOSE_FLAGS]
    return flags + [arg for arg in head if arg not in VERBOSE_FLAGS] + tail
