"""One place for URIs: local paths and ``s3://`` through fsspec, atomic writes, retries.

Every large thing (data, features, checkpoints, predictions) is read and written through these functions,
so the same code runs on a laptop folder, a local S3 server and a cluster bucket. S3 endpoint and
credentials come from the standard variables (``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT_URL_S3``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``).

Atomicity: a local write goes to a hidden temporary name in the same folder and is renamed into place; an
S3 object only becomes visible when its upload completes (single PUT, or a multipart upload that s3fs aborts
on failure), so a reader never sees half an object.

Retries: every call goes through ``with_retries``, which retries only transient failures (lost connections,
timeouts, throttling, 5xx; see ``is_transient``) with exponential backoff. A missing object, a refused
permission or a bad request fails at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

logger = logging.getLogger(__name__)

# S3 error codes that mean "try again later"; every other code (NoSuchKey, AccessDenied, InvalidArgument...)
# is the caller's problem and is raised at once.
TRANSIENT_S3_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "TooManyRequests",
        "RequestLimitExceeded",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
    }
)
# Failures of the caller's request itself: never retried, even when they wrap a transient cause.
_PERMANENT_OS_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_remote(uri: str) -> bool:
    """True for URIs with a scheme other than file:// (s3://, gs://, memory://...)."""
    return "://" in str(uri) and not str(uri).startswith("file://")


def join(uri: str, *parts: str) -> str:
    """Join path parts onto a local path or URI with forward slashes for remote URIs."""
    if is_remote(uri):
        return posixpath.join(str(uri).rstrip("/"), *[p.strip("/") for p in parts])
    return str(Path(uri, *parts))


def s3_options() -> dict[str, Any]:
    """s3fs options from the standard AWS variables (endpoint, keys, region).

    The keys are passed explicitly so that fsspec's instance cache never hands out a filesystem holding
    other credentials; listings are not cached because other processes (pipeline steps) write concurrently.
    """
    options: dict[str, Any] = {"use_listings_cache": False}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["endpoint_url"] = endpoint
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        options["key"] = os.environ["AWS_ACCESS_KEY_ID"]
        options["secret"] = os.environ["AWS_SECRET_ACCESS_KEY"]
        if os.environ.get("AWS_SESSION_TOKEN"):
            options["token"] = os.environ["AWS_SESSION_TOKEN"]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["client_kwargs"] = {"region_name": region}
    return options


def filesystem(uri: str):
    """(fsspec filesystem, path inside it) for a local path or URI."""
    import fsspec

    uri = str(uri)
    if uri.startswith(("s3://", "s3a://")):
        return fsspec.core.url_to_fs(uri, **s3_options())
    return fsspec.core.url_to_fs(uri)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is worth retrying: lost connections, timeouts, throttling and 5xx answers.

    Walks the exception chain (s3fs re-raises botocore errors as OSError with the original as cause) and
    decides on the first link it recognises. Missing objects, permissions and bad requests are permanent.
    """
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        verdict = _classify(link)
        if verdict is not None:
            return verdict
        link = link.__cause__ or link.__context__
    return False


def _classify(error: BaseException) -> bool | None:
    """True/False when this exception alone decides; None to look at its cause."""
    if isinstance(error, _PERMANENT_OS_ERRORS):
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:  # botocore / aiobotocore ClientError
        code = str(response["Error"].get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return code in TRANSIENT_S3_CODES or status >= 500 or status == 429 or (code.isdigit() and int(code) >= 500)
    status = getattr(error, "status", None)  # aiohttp.ClientResponseError (http:// URIs)
    if isinstance(status, int) and type(error).__module__.startswith("aiohttp"):
        return status >= 500 or status == 429
    return _transport_error(error)


def _transport_error(error: BaseException) -> bool | None:
    """botocore/aiohttp/fsspec connection and timeout errors (libraries imported only if already loaded)."""
    candidates: list[type] = []
    if "botocore" in sys.modules:
        import botocore.exceptions as bex

        candidates += [bex.ConnectionError, bex.HTTPClientError]
    if "aiohttp" in sys.modules:
        import aiohttp

        candidates += [aiohttp.ClientConnectionError, aiohttp.ClientPayloadError]
    if "fsspec" in sys.modules:
        from fsspec.exceptions import FSTimeoutError

        candidates.append(FSTimeoutError)
    return True if candidates and isinstance(error, tuple(candidates)) else None


def with_retries(
    func: Callable[[], T],
    attempts: int = 4,
    base_delay: float = 0.5,
    what: str = "storage call",
    max_delay: float = 8.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``func``; retry transient errors (``is_transient``) with exponential backoff.

    Waits ``base_delay * 2**k`` (capped at ``max_delay``) before attempt k+2. A permanent error is raised
    unchanged at once; after ``attempts`` transient failures an OSError naming ``what`` is raised from the last.
    """
    for attempt in range(1, attempts + 1):
        try:
            return func()
        except Exception as error:  # noqa: PERF203
            if not is_transient(error):
                raise
            if attempt == attempts:
                raise OSError(f"{what} failed after {attempts} attempts: {error!r}") from error
            delay = min(max_delay, base_delay * 2 ** (attempt - 1))
            logger.warning("%s: transient error (%r); retry %d/%d in %.1f s", what, error, attempt, attempts - 1, delay)
            sleep(delay)
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
