"""Whether a location is a VEGA-3D data root: the one decision, with the one message and fix a user sees.

The CLI's quick guard (:func:`vega3d.errors.require_data_root`: ``train``, ``eval``, ``data check|prep``,
``pipeline run``), the full check (:func:`vega3d.data.check.check_data_root`, its first problem) and the
preflight of training and evaluation (:func:`vega3d.preflight.preflight`) all ask :func:`data_root_problem`, so
a missing root, a file given as the root, an unreadable folder or a folder without the layout's top folders
reads the same wherever it is met.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vega3d import storage

# Top folders of a data root (SPEC.md section 5) that each use needs.
TOP_FOLDERS = ("scannet", "benchmark")  # any data root: raw scans and benchmark files (check, prep, train)
EVAL_FOLDERS = ("scannet", "processed")  # evaluating a model: frames and prepared records
SCORE_FOLDERS = ("processed",)  # scoring given predictions: the prepared records only

FIX = ("pass --data-root (or --set data.root=DIR) naming a folder in the ScanNet layout of SPEC.md section 5 "
       "(`vega3d data synth --data-root DIR` writes a synthetic one)")
READ_FIX = "give this user read access to it (for s3://, check the credentials) or pass another --data-root"


def prep_fix(root: str) -> str:
    """The fix for a data root that has not been prepared yet."""
    return f"run `vega3d data prep --data-root {root}` first (it writes processed/)"


@dataclass(frozen=True)
class RootProblem:
    """Why a location is not a usable data root (``what``, one line) and how to fix it (``fix``, one line)."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}; {self.fix}"


def data_root_problem(root: str | Path, expected: Sequence[str] = TOP_FOLDERS) -> RootProblem | None:
    """Why ``root`` is not a data root holding the ``expected`` top folders, or None when it is one.

    A local root (a path or ``file://``) must exist, be a folder this user can list and hold every expected
    folder; an ``s3://`` root is listed once (with this process's credentials) and must hold the expected folders.
    """
    remote = storage.is_remote(str(root))
    local = Path(str(root).removeprefix("file://"))
    shown = str(root) if remote else str(local)
    absent = None if remote else _not_a_folder(local)
    if absent:
        return RootProblem(f"data root {shown} {absent}", FIX)
    try:
        names = set(storage.listdir(str(root))) if remote else _folder_names(local)
    except Exception as error:  # noqa: BLE001 - any failure to list the root is the answer
        return RootProblem(f"data root {shown} cannot be read ({type(error).__name__}: {error})", READ_FIX)
    if remote and not names:
        return RootProblem(f"data root {shown} does not exist (nothing under it)", FIX)
    missing = [name for name in expected if name not in names]
    if not missing:
        return None
    fix = prep_fix(shown) if missing == ["processed"] else FIX
    return RootProblem(
        f"data root {shown} is not a VEGA-3D data root: no {' or '.join(m + '/' for m in missing)} folder", fix)


def _not_a_folder(path: Path) -> str | None:
    """What a local root that is no folder is ("does not exist", "is not a folder"); None for a folder."""
    if not path.exists():
        return "does not exist"
    return None if path.is_dir() else "is not a folder"


def _folder_names(path: Path) -> set[str]:
    """Names of the folders directly under ``path``; PermissionError when this user cannot list it."""
    if not os.access(path, os.R_OK | os.X_OK):
        raise PermissionError("not readable by this user")
    return {entry.name for entry in path.iterdir() if entry.is_dir()}
