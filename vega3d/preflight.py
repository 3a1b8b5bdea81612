"""Access checks before any training or evaluation work starts (issue 16: fail fast).

Without them an unwritable output was discovered at the first checkpoint (step 500 by default), hours in.
:func:`preflight` checks, in one go, that every output location takes a write (a probe object is written and
deleted: local folder or s3://), that the data root is one (:mod:`vega3d.data.root`, the same decision and
words as the CLI and ``data check``), and that the tracking server answers both
``/health`` and one API call with this process's credentials. Output and data problems raise
:class:`PreflightError` listing all of them; a tracking problem is reported up front as a warning, since
training and evaluation go on without tracking by design (``vega3d.tracking``, safe mode).
"""

from __future__ import annotations

import base64
import logging
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

from vega3d import storage
from vega3d.data.root import TOP_FOLDERS, data_root_problem

logger = logging.getLogger(__name__)

PROBE_PREFIX = ".vega3d-write-probe-"


class PreflightError(RuntimeError):
    """An output location or the data root cannot be used; nothing was started."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("cannot start, fix these first:\n  " + "\n  ".join(self.problems))


def output_problem(uri: str) -> str | None:
    """Why ``uri`` cannot take a write (a probe object is written and removed), or None."""
    probe = storage.join(uri, f"{PROBE_PREFIX}{uuid.uuid4().hex}")
    try:
        if not storage.is_remote(uri):
            Path(uri).mkdir(parents=True, exist_ok=True)
        storage.write_bytes(probe, b"vega3d preflight\n")
        storage.remove(probe)
    except Exception as error:  # noqa: BLE001 - any failure to write is the answer
        return (f"output {uri} is not writable ({type(error).__name__}: {error}); choose a writable --output or "
                "fix its permissions/credentials")
    return None


def file_folders(uris: Sequence[str]) -> list[str]:
    """The folders (local or remote) that must take a write for these output files."""
    return [uri.rsplit("/", 1)[0] if storage.is_remote(uri) else str(Path(uri).resolve().parent) for uri in uris]


def tracking_problem(uri: str, timeout_s: float = 5.0) -> str | None:
    """Why the MLflow server at ``uri`` cannot be used (``/health`` and one API call), or None."""
    if not uri.startswith(("http://", "https://")):
        return None
    base = uri.rstrip("/")
    headers = {}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        request = urllib.request.Request(base + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s):  # noqa: S310 - the configured server
                pass
        except urllib.error.HTTPError as error:
            hint = "check MLFLOW_TRACKING_USERNAME/PASSWORD" if error.code in (401, 403) else "check the server"
            return f"tracking server {uri} answers {path.split('?')[0]} with HTTP {error.code}; {hint}"
        except (urllib.error.URLError, OSError) as error:
            return f"tracking server {uri} does not answer {path.split('?')[0]} ({error}); start it or fix the URI"
    return None


def preflight(outputs: Sequence[str], data_root: str | None = None, tracking_uri: str | None = None,
              data_folders: Sequence[str] = TOP_FOLDERS) -> None:
    """Check every output, the data root (holding ``data_folders``, :mod:`vega3d.data.root`) and the tracking
    server; raise PreflightError on output/data problems."""
    problems = [p for p in (output_problem(uri) for uri in dict.fromkeys(outputs)) if p]
    root_problem = data_root_problem(data_root, data_folders) if data_root else None
    if root_problem:
        problems.append(str(root_problem))
    if tracking_uri:
        problem = tracking_problem(tracking_uri)
        if problem:
            logger.warning("MLflow: %s; the work goes on without tracking", problem)
    if problems:
        raise PreflightError(problems)
