"""A generic resumable, sharded inference runner writing predictions as JSONL.

Shard ``i`` of ``n`` takes records ``i, i+n, i+2n, ...`` and appends one JSON line per record to
``<out>/shards/shard-<i>-of-<n>.jsonl``, flushing and fsync-ing after each batch. A rerun reads the shard
file, drops a torn last line (a crash mid-write), and skips the ids already there, so a crash loses at most
the batch in flight. For a remote ``out_uri`` (s3://...) the shard file is kept in a local staging folder
and uploaded every ``sync_every`` batches and at the end; a rerun downloads it first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from vega3d import storage

logger = logging.getLogger(__name__)

Record = Mapping[str, Any]
Prediction = dict[str, Any]
PredictBatch = Callable[[list[Record]], list[Prediction]]


def shard_name(shard_index: int, num_shards: int) -> str:
    """File name of one shard: shard-00001-of-00004.jsonl."""
    return f"shard-{shard_index:05d}-of-{num_shards:05d}.jsonl"


def shard_records(records: Sequence[Record], shard_index: int, num_shards: int) -> list[Record]:
    """Records of one shard (strided, so shards stay balanced when records are sorted by scene)."""
    if num_shards < 1 or not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index must be in [0, num_shards), got {shard_index} of {num_shards}")
    return list(records[shard_index::num_shards])


def _read_done(path: Path) -> dict[str, Prediction]:
    """Finished predictions of a local shard file; a torn last line is cut off the file."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    done: dict[str, Prediction] = {}
    good_end = 0
    offset = 0
    for line in data.splitlines(keepends=True):
        offset += len(line)
        if not line.endswith(b"\n"):
            break  # torn write: no newline yet
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break
        done[str(row["id"])] = row
        good_end = offset
    if good_end < len(data):
        logger.warning("%s: dropping %d bytes of a torn last line", path, len(data) - good_end)
        with open(path, "r+b") as handle:
            handle.truncate(good_end)
    return done


def _staging_path(shard_uri: str) -> Path:
    digest = hashlib.sha256(shard_uri.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "vega3d-eval-staging" / digest / Path(shard_uri).name


def run_inference(
    records: Sequence[Record],
    predict_batch: PredictBatch,
    out_uri: str,
    shard_index: int = 0,
    num_shards: int = 1,
    batch_size: int = 8,
    sync_every: int = 16,
    progress: bool = True,
) -> str:
    """Predict every record of one shard not yet in its shard file; returns the shard file's URI.

    ``predict_batch`` gets up to ``batch_size`` records and returns one prediction dict per record, in order,
    each with the record's ``id``.
    """
    from vega3d.logs import progress as progress_bar

    shard_uri = storage.join(out_uri, "shards", shard_name(shard_index, num_shards))
    remote = storage.is_remote(shard_uri)
    local = _staging_path(shard_uri) if remote else Path(shard_uri)
    local.parent.mkdir(parents=True, exist_ok=True)
    if remote:  # the object store holds the truth; a staged copy from an older run is discarded
        local.unlink(missing_ok=True)
        if storage.exists(shard_uri):
            storage.download_file(shard_uri, local)
    done = _read_done(local)
    todo = [r for r in shard_records(records, shard_index, num_shards) if str(r["id"]) not in done]
    logger.info("shard %d/%d: %d done, %d to predict -> %s", shard_index, num_shards, len(done), len(todo), shard_uri)
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    with open(local, "ab") as handle:
        for number, batch in enumerate(progress_bar(batches, desc=f"shard {shard_index}", disable=not progress), 1):
            preds = predict_batch(list(batch))
            _check_batch(batch, preds)
            handle.write("".join(json.dumps(p) + "\n" for p in preds).encode())
            handle.flush()
            os.fsync(handle.fileno())
            if remote and number % sync_every == 0:
                storage.upload_file(local, shard_uri)
    if remote:
        storage.upload_file(local, shard_uri)
    return shard_uri


def _check_batch(batch: Sequence[Record], preds: Sequence[Prediction]) -> None:
    if len(preds) != len(batch):
        raise ValueError(f"predict_batch returned {len(preds)} predictions for {len(batch)} records")
    for record, pred in zip(batch, preds, strict=True):
        if str(pred.get("id")) != str(record["id"]):
            raise ValueError(f"predict_batch returned id {pred.get('id')!r} for record {record['id']!r} (keep the order)")


def merge_shards(out_uri: str, num_shards: int, filename: str = "predictions.jsonl") -> str:
    """Concatenate the shard files of a run into ``<out>/predictions.jsonl`` (atomic); returns its URI.

    Fails naming the missing shards when any shard file is absent.
    """
    rows: list[str] = []
    missing = []
    for index in range(num_shards):
        uri = storage.join(out_uri, "shards", shard_name(index, num_shards))
        if not storage.exists(uri):
            missing.append(uri)
            continue
        rows.extend(line for line in storage.read_text(uri).splitlines() if line.strip())
    if missing:
        raise FileNotFoundError(f"cannot merge: shard files missing (run those shards first): {missing}")
    target = storage.join(out_uri, filename)
    storage.write_text(target, "".join(line + "\n" for line in rows))
    return target
