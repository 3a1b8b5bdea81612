"""One place for URIs: local paths and ``s3://`` through fsspec, atomic writes, retries.

Every large thing (data, features, checkpoints, predictions) is read and written through these functions,
so the same code runs on a laptop folder, a local S3 server and a cluster bucket. S3 endpoint and
credentials come from the standard variables (``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``).

Atomicity: a local write goes to a hidden temporary name in the same folder and is renamed into place; an
S3 object only becomes visible when its upload completes, so a reader never sees half an object.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


def is_remote(uri: str) -> bool:
    """True for URIs with a scheme other than file:// (s3://, gs://, memory://...)."""
    return "://" in str(uri) and not str(uri).startswith("file://")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with forward slashes for remote URIs."""
    if is_remote(uri):
        return posixpath.join(str(uri).rstrip("/"), *[p.strip("/") for p in parts])
    return str(Path(uri, *parts))


def _s3_options() -> dict[str, Any]:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, Any] = {}
    if endpoint:
        options["endpoint_url"] = endpoint
    return options


def filesystem(uri: str):
    """(fsspec filesystem, path inside it) for a local path or URI."""
    import fsspec

    uri = str(uri)
    if uri.startswith("s3://"):
        return fsspec.core.url_to_fs(uri, **_s3_options())
    return fsspec.core.url_to_fs(uri)


def with_retries(
    func: Callable[[], T], attempts: int = 4, base_delay: float = 0.5, what: str = "storage call"
) -> T:
    """Call ``func``, retrying transient network errors with exponential backoff."""
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except TRANSIENT_ERRORS as error:  # noqa: PERF203
            if attempt == attempts:
                raise OSError(f"{what} failed after {attempts} attempts: {error}") from error
            time.sleep(base_delay * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def exists(uri: str) -> bool:
    """Whether a file or folder exists at the URI."""
    fs, path = filesystem(uri)
    return with_retries(lambda: fs.exists(path), what=f"exists({uri})")


def read_bytes(uri: str) -> bytes:
    """Whole content of a file."""
    fs, path = filesystem(uri)
    return with_retries(lambda: fs.cat_file(path), what=f"read {uri}")


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def read_json(uri: str) -> Any:
    """Parse a JSON file, naming the file when it is not valid JSON."""
    raw = read_text(uri)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{uri}: not valid JSON ({error}); re-create the file") from None


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole file atomically (temporary name + rename locally; single PUT on object stores)."""
    if is_remote(uri):
        fs, path = filesystem(uri)
        with_retries(lambda: fs.pipe_file(path, data), what=f"write {uri}")
        return
    with atomic_local_path(uri) as tmp:
        Path(tmp).write_bytes(data)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def write_json(uri: str, obj: Any, indent: int | None = None) -> None:
    write_text(uri, json.dumps(obj, indent=indent))


@contextlib.contextmanager
def atomic_local_path(path: str | Path) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it into place, on error delete it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield str(tmp)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_output(uri: str) -> Iterator[str]:
    """Yield a local file path to write; it appears at ``uri`` (local or remote) only when complete."""
    if not is_remote(uri):
        with atomic_local_path(uri) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="vega3d-upload-") as folder:
        tmp = os.path.join(folder, posixpath.basename(uri))
        yield tmp
        upload_file(tmp, uri)


def upload_file(local: str | Path, uri: str) -> None:
    """Copy a local file to a URI (atomic as in write_bytes)."""
    if not is_remote(uri):
        with atomic_local_path(uri) as tmp:
            with open(local, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 22):
                    dst.write(chunk)
        return
    fs, path = filesystem(uri)
    with_retries(lambda: fs.put_file(str(local), path), what=f"upload {local} -> {uri}")


def download_file(uri: str, local: str | Path) -> None:
    """Copy a URI to a local file, atomically."""
    fs, path = filesystem(uri)
    with atomic_local_path(local) as tmp:
        with_retries(lambda: fs.get_file(path, tmp), what=f"download {uri}")


def listdir(uri: str) -> list[str]:
    """Names (not full paths) directly inside a folder; empty when it does not exist."""
    fs, path = filesystem(uri)
    if not with_retries(lambda: fs.exists(path), what=f"list {uri}"):
        return []
    entries = with_retries(lambda: fs.ls(path, detail=False), what=f"list {uri}")
    return sorted(posixpath.basename(str(e).rstrip("/")) for e in entries)


def remove(uri: str, recursive: bool = False) -> None:
    """Delete a file (or a folder with recursive=True); missing is fine."""
    fs, path = filesystem(uri)
    if with_retries(lambda: fs.exists(path), what=f"remove {uri}"):
        with_retries(lambda: fs.rm(path, recursive=recursive), what=f"remove {uri}")
