"""Errors shared by more than one part of the library, and how user mistakes are shown: one or two lines (what is wrong, how to fix it), exit code 2.

A ``UserError`` (or one of the library's own "bad input" errors that ``as_user_error`` recognises) reaching
the top of the ``vega3d`` command prints::

    error: data root /data/scannet does not exist
      fix: pass --data-root (or --set data.root=DIR) naming a folder in the ScanNet layout of SPEC.md ...

and exits with 2 (a failed pipeline step: 1); the traceback only appears with ``-v``. Anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vega3d.data.root import TOP_FOLDERS, data_root_problem

USAGE_EXIT_CODE = 2


class UserError(Exception):
    """A mistake the user can fix: ``what`` is wrong and ``fix`` says how (both one line)."""

    exit_code = USAGE_EXIT_CODE

    def __init__(self, what: str, fix: str = "") -> None:
        super().__init__(what if not fix else f"{what}; {fix}")
        self.what = what
        self.fix = fix

    def lines(self) -> list[str]:
        """The one or two lines shown to the user."""
        return [f"error: {_one_line(self.what)}"] + ([f"  fix: {_one_line(self.fix)}"] if self.fix else [])


class CheckpointError(ValueError, FileNotFoundError):
    """A checkpoint (ours, LLaVA-Video or a generative model's) is missing, unreadable or does not match the
    configuration; the message names the file and the fix. Both a ValueError and a FileNotFoundError."""


class DataRootError(UserError):
    """The data root is missing or is not a ScanNet-layout data root."""


class UnreachableServer(UserError):
    """A server (MLflow, S3, Kubeflow) does not answer."""


class UnknownParameter(UserError):
    """A pipeline parameter name the pipeline does not declare."""


class PipelineFailed(UserError, RuntimeError):
    """A pipeline step failed: shown as which step and where its log is (its traceback is in that log).

    ``logs`` are the failed steps' log files (empty when the run's output was not split into files).
    """

    exit_code = 1

    def __init__(self, what: str, fix: str = "", logs: Sequence[Path] = ()) -> None:
        super().__init__(what, fix)
        self.logs = list(logs)


def _one_line(text: str) -> str:
    """Lines joined with "; " (a trailing colon already separates)."""
    parts = [part.strip() for part in str(text).strip().splitlines() if part.strip()]
    return "".join(p + (" " if p.endswith(":") else "; ") for p in parts[:-1]) + (parts[-1] if parts else "")


def as_user_error(error: BaseException) -> UserError | None:
    """The ``UserError`` for errors that mean a user mistake (bad config, bad data root, server down); else None."""
    if isinstance(error, UserError):
        return error
    from vega3d.config import ConfigError

    if isinstance(error, ConfigError):
        return UserError(str(error), "fix the preset file or the --set value named above (`--help` lists them)")
    from vega3d.params import ParamError

    if isinstance(error, ParamError):
        return UserError(str(error), "give a value of that type (`vega3d pipeline run --help` lists the parameters)")
    from vega3d.tracking import TrackingError

    if isinstance(error, TrackingError):  # its message may end with "; <how to fix>"
        what, _, fix = str(error).partition("; ")
        return UnreachableServer(what, fix or "start the server or fix --tracking-uri / MLFLOW_TRACKING_URI")
    from vega3d.evaluation.meteor import MeteorError
    from vega3d.model.length import PromptTooLongError
    from vega3d.preflight import PreflightError

    if isinstance(error, PreflightError):
        return UserError(str(error), "fix the location or its credentials named above, then rerun")
    if isinstance(error, PromptTooLongError):
        return UserError(str(error), "shorten or drop the record named above, or raise model.max_length")
    if isinstance(error, MeteorError):
        return UserError(str(error), "check that Java runs (`java -version`), or pass --no-meteor")
    return None


def require_data_root(root: str, expected: Sequence[str] = TOP_FOLDERS) -> None:
    """Fail with a ``DataRootError`` unless ``root`` is a data root holding the ``expected`` top folders.

    Called before anything reads from the root, so a wrong root is reported as such (and not as the first
    file some later stage happens to miss, such as a generative checkpoint under ``models/``). The decision and
    its message are :func:`vega3d.data.root.data_root_problem`'s, the same as ``data check`` and the preflight.
    """
    problem = data_root_problem(root, expected)
    if problem:
        raise DataRootError(problem.what, problem.fix)


def check_names(given: Sequence[str], known: Sequence[str], what: str, fix: str) -> None:
    """Fail with an ``UnknownParameter`` naming every name of ``given`` not in ``known`` (with close matches)."""
    import difflib

    unknown = [name for name in given if name not in known]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise UnknownParameter(f"unknown {what} {', '.join(hints)}", fix)


def check_server(url: str, what: str, fix: str, timeout: float = 5.0) -> None:
    """Fail within ``timeout`` seconds with an ``UnreachableServer`` unless ``url`` answers (any HTTP status < 500)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 - an http(s) URL the user gave
            return
    except urllib.error.HTTPError as error:
        if error.code < 500:
            return
        reason = f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        reason = str(getattr(error, "reason", error))
    raise UnreachableServer(f"{what} at {url} does not answer ({reason})", fix)


def show(error: UserError, stream: Any = None) -> None:
    """Print the user error's lines on ``stream`` (stderr)."""
    stream = stream or sys.stderr
    for line in error.lines():
        print(line, file=stream)


def handled(invoke: Callable[[], Any], verbose: Callable[[], bool]) -> Any:
    """Call ``invoke``; a user mistake prints its two lines and becomes ``typer.Exit(2)``.

    ``verbose()`` is asked after the failure (the root callback has parsed ``-v`` by then): with it, the
    traceback is printed as well. Anything that is not a user mistake propagates unchanged.
    """
    import typer

    try:
        return invoke()
    except typer.BadParameter as usage:  # raised by a command's body
        command = f"`{usage.ctx.command_path} --help`" if usage.ctx else "`--help`"
        show(UserError(usage.format_message(), f"see {command}"))
        raise typer.Exit(USAGE_EXIT_CODE) from None
    except Exception as error:
        user = as_user_error(error)
        if user is None:
            raise
        if verbose():
            traceback.print_exc()
        show(user)
        raise typer.Exit(user.exit_code) from None
