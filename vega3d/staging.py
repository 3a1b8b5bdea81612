"""Moving folders between a storage URI and a local working copy.

The readers of the data, model and feature code read local files; pipeline steps run on machines that only
share the storage root. A step stages what it reads down into a local cache and stages what it wrote back up,
many files at once (``vega3d.transfers``: fsspec's bulk get/put, concurrently), each file atomic. A cached
file is reused only while the remote object is the version it was fetched from (size and ETag, recorded in
``<copy>.manifest.json`` beside the copy): an object rewritten with the same size (a new random checkpoint of
the same shapes) is fetched again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from vega3d import storage, transfers

logger = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Local cache root: $VEGA3D_CACHE or ~/.cache/vega3d."""
    return Path(os.environ.get("VEGA3D_CACHE", Path.home() / ".cache" / "vega3d"))


def local_copy_dir(uri: str, cache_dir: Path | None = None) -> Path:
    """Where the local working copy of a remote folder lives (stable per URI)."""
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return (cache_dir or default_cache_dir()) / "staged" / f"{name}-{digest}"


def _remote_files(uri: str) -> dict[str, tuple[int, str]]:
    """Relative path -> (size, version) of every file under a remote folder; the version is the ETag
    (content-derived on S3), else the modification time."""
    fs, root = storage.filesystem(uri)
    root = root.rstrip("/")
    listing = storage.with_retries(lambda: fs.find(root, detail=True), what=f"list {uri}")
    return {
        path[len(root) + 1 :]: (
            int(info.get("size") or 0),
            str(info.get("ETag") or info.get("LastModified") or info.get("mtime") or ""),
        )
        for path, info in listing.items()
    }


def _manifest_path(target: Path) -> Path:
    return target.with_name(target.name + ".manifest.json")


def _read_manifest(target: Path) -> dict[str, str]:
    """Relative path -> the remote version each cached file was fetched from (empty when unreadable)."""
    try:
        return json.loads(_manifest_path(target).read_text())
    except (OSError, ValueError):
        return {}


def stage_down(uri: str, cache_dir: Path | None = None, subpaths: list[str] | None = None) -> Path:
    """Make a local folder mirror ``uri`` (only ``subpaths`` prefixes when given); local URIs are returned as is."""
    if not storage.is_remote(uri):
        return Path(uri)
    target = local_copy_dir(uri, cache_dir)
    remote = _remote_files(uri)
    wanted = {
        rel: entry
        for rel, entry in remote.items()
        if subpaths is None or any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in subpaths)
    }
    manifest = _read_manifest(target)
    stale = {
        rel: version
        for rel, (size, version) in sorted(wanted.items())
        if not ((target / rel).exists() and (target / rel).stat().st_size == size and manifest.get(rel) == version)
    }
    fetched = transfers.download_many([(storage.join(uri, rel), target / rel) for rel in stale], desc="stage down")
    if fetched:
        manifest.update(stale)
        with storage.atomic_local_path(_manifest_path(target)) as tmp:
            Path(tmp).write_text(json.dumps(manifest, indent=0, sort_keys=True))
    logger.info("staged %s -> %s (%d of %d files fetched)", uri, target, fetched, len(wanted))
    return target


def stage_up(local_dir: str | Path, uri: str, subpaths: list[str]) -> int:
    """Upload the files under ``local_dir/<subpath>`` to ``uri/<subpath>``; returns the number uploaded."""
    if not storage.is_remote(uri) and Path(uri).resolve() == Path(local_dir).resolve():
        return 0
    local_dir = Path(local_dir)
    pairs = []
    for sub in subpaths:
        base = local_dir / sub
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        # temporary names of interrupted writes (".name.tmp-...") are never published
        pairs += [(p, storage.join(uri, p.relative_to(local_dir).as_posix())) for p in files if not p.name.startswith(".")]
    return transfers.upload_many(pairs, desc="stage up")
