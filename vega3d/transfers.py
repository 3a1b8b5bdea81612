"""Many files between a local folder and a storage URI at once: fsspec's bulk get/put, concurrently.

s3fs is an async filesystem: ``fs.get(rpaths, lpaths, batch_size=N)`` and ``fs.put(lpaths, rpaths, ...)``
keep N requests in flight, where a loop of ``get_file``/``put_file`` waits for each object in turn (thousands
of small files: processed records, voxel sets, checkpoints' shards). Files move in chunks; a chunk that hits a
transient error is retried as a whole (``storage.with_retries``), and a progress bar (a status line off a
terminal, ``vega3d.logs.progress``) advances per chunk.

Downloads land under temporary names beside their targets and are renamed into place when their chunk is
complete, so a reader never sees a partial file. Uploads to object stores are atomic per object already.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fsspec.core import strip_protocol

from vega3d import storage
from vega3d.logs import progress

CONCURRENCY = 32  # requests in flight
CHUNK = 256  # files per retried unit (and per progress update)


def _transfer(
    pairs: Sequence[tuple], remote_uri: Callable[[tuple], str], copy_one: Callable[[tuple], None],
    copy_chunk: Callable[[Any, Sequence[tuple]], None], desc: str,
) -> int:  # fmt: skip
    """Copy local pairs one by one and remote ones chunk by chunk (one fsspec bulk call each), with progress."""
    bar = progress(total=len(pairs), desc=desc, unit="file", disable=not pairs)
    remote = [pair for pair in pairs if storage.is_remote(remote_uri(pair))]
    for pair in pairs:
        if not storage.is_remote(remote_uri(pair)):
            copy_one(pair)
            bar.update(1)
    if remote:
        fs, _ = storage.filesystem(remote_uri(remote[0]))
        for start in range(0, len(remote), CHUNK):
            chunk = remote[start : start + CHUNK]
            storage.with_retries(lambda chunk=chunk: copy_chunk(fs, chunk), what=f"{desc}: {len(chunk)} files")
            bar.update(len(chunk))
    bar.close()
    return len(pairs)


def download_many(pairs: Sequence[tuple[str, Path]], desc: str = "download", concurrency: int = CONCURRENCY) -> int:
    """Copy each ``(uri, local path)``; remote URIs in concurrent batches. Returns the number of files."""

    def get_chunk(fs: Any, chunk: Sequence[tuple[str, Path]]) -> None:
        temporaries = [Path(local).parent / f".{Path(local).name}.tmp-{uuid.uuid4().hex[:8]}" for _, local in chunk]
        try:
            for tmp in temporaries:
                tmp.parent.mkdir(parents=True, exist_ok=True)
            fs.get([strip_protocol(uri) for uri, _ in chunk], [str(t) for t in temporaries], batch_size=concurrency)
            for tmp, (_, local) in zip(temporaries, chunk, strict=True):
                os.replace(tmp, local)
        finally:
            for tmp in temporaries:
                tmp.unlink(missing_ok=True)

    return _transfer(pairs, lambda pair: pair[0], lambda pair: storage.download_file(*pair), get_chunk, desc)


def upload_many(pairs: Sequence[tuple[Path, str]], desc: str = "upload", concurrency: int = CONCURRENCY) -> int:
    """Copy each ``(local path, uri)``; remote URIs in concurrent batches. Returns the number of files."""

    def put_chunk(fs: Any, chunk: Sequence[tuple[Path, str]]) -> None:
        fs.put([str(local) for local, _ in chunk], [strip_protocol(uri) for _, uri in chunk], batch_size=concurrency)

    return _transfer(pairs, lambda pair: pair[1], lambda pair: storage.upload_file(*pair), put_chunk, desc)
