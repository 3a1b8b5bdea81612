"""Errors raised by the data readers: each names the file and says how to fix it."""

from __future__ import annotations

from pathlib import Path


class DataFileError(ValueError):
    """A data file is missing, unreadable or holds invalid values.

    ``path`` is the offending file; the message reads ``"<path>: <problem>; <fix>"``.
    """

    def __init__(self, path: str | Path, problem: str, fix: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.path}: {problem}; {fix}")


class MissingDataFileError(DataFileError):
    """A file the layout requires does not exist."""

    def __init__(self, path: str | Path, fix: str = "re-download or re-create the data root") -> None:
        super().__init__(path, "file not found", fix)


def require_file(path: str | Path, fix: str = "re-download or re-create the data root") -> Path:
    """Return ``path`` as a Path, raising MissingDataFileError when it is not an existing file."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataFileError(path, fix)
    return path
