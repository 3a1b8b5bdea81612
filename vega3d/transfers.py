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
from collections.abc import Sequence
from pathlib import Path

from fsspec.core import strip_protocol

from vega3d import storage
from vega3d.logs import progress

CONCURRENCY = 32  # requests in flight
CHUNK = 256  # files per retried unit (and per progress update)


def _chunks(items: Sequence, size: int) -> list[Sequence]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def download_many(pairs: Sequence[tuple[str, Path]], desc: str = "download", concurrency: int = CONCURRENCY) -> int:
    """Copy each ``(uri, local path)``; remote URIs in concurrent batches. Returns the number of files."""
    remote = [(uri, Path(local)) for uri, local in pairs if storage.is_remote(uri)]
    bar = progress(total=len(pairs), desc=desc, unit="file", disable=not pairs)
    for uri, local in pairs:
        if not storage.is_remote(uri):
            storage.download_file(uri, local)
            bar.update(1)
    if remote:
        fs, _ = storage.filesystem(remote[0][0])
        for chunk in _chunks(remote, CHUNK):
            temporaries = [local.parent / f".{local.name}.tmp-{uuid.uuid4().hex[:8]}" for _, local in chunk]
            for tmp in temporaries:
                tmp.parent.mkdir(parents=True, exist_ok=True)
            rpaths = [strip_protocol(uri) for uri, _ in chunk]
            try:
                storage.with_retries(
                    lambda rpaths=rpaths, temporaries=temporaries: fs.get(
                        rpaths, [str(t) for t in temporaries], batch_size=concurrency
                    ),
                    what=f"{desc}: {len(chunk)} files",
                )
                for tmp, (_, local) in zip(temporaries, chunk, strict=True):
                    os.replace(tmp, local)
            finally:
                for tmp in temporaries:
                    tmp.unlink(missing_ok=True)
            bar.update(len(chunk))
    bar.close()
    return len(pairs)


def upload_many(pairs: Sequence[tuple[Path, str]], desc: str = "upload", concurrency: int = CONCURRENCY) -> int:
    """Copy each ``(local path, uri)``; remote URIs in concurrent batches. Returns the number of files."""
    remote = [(Path(local), uri) for local, uri in pairs if storage.is_remote(uri)]
    bar = progress(total=len(pairs), desc=desc, unit="file", disable=not pairs)
    for local, uri in pairs:
        if not storage.is_remote(uri):
            storage.upload_file(local, uri)
            bar.update(1)
    if remote:
        fs, _ = storage.filesystem(remote[0][1])
        for chunk in _chunks(remote, CHUNK):
            lpaths = [str(local) for local, _ in chunk]
            rpaths = [strip_protocol(uri) for _, uri in chunk]
            storage.with_retries(
                lambda lpaths=lpaths, rpaths=rpaths: fs.put(lpaths, rpaths, batch_size=concurrency),
                what=f"{desc}: {len(chunk)} files",
            )
            bar.update(len(chunk))
    bar.close()
    return len(pairs)
