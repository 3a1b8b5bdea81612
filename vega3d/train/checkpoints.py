"""Resumable training checkpoints under ``<output_uri>/checkpoints`` (local path or s3://), written atomically.

Layout: ``checkpoints/step-00000010/`` holds DeepSpeed's engine files (model, ZeRO optimizer shards, scheduler;
``engine.save_checkpoint``), ``trainer_state.json`` (global step, epoch, position in the epoch), one
``rng_rank<r>.json`` per rank (python / numpy / torch RNG states, plain JSON, no pickle) and, written LAST,
``complete.json``. Only folders with ``complete.json`` are ever chosen for resume, so an interrupted write
(SIGKILL, node loss) is never read:

- local output: every rank writes into ``checkpoints/.tmp-step-N`` (same filesystem), rank 0 writes
  ``complete.json`` inside and renames the folder to ``step-N`` (an atomic rename);
- object store: every rank writes into its own local staging folder and uploads what it wrote to
  ``checkpoints/step-N/``; after a barrier rank 0 uploads ``complete.json``.

After each save rank 0 deletes all but the newest ``keep_last`` complete checkpoints and any stale partial
folders. All methods except :func:`latest_complete` are collective: every rank must call them.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from vega3d import storage
from vega3d.train.safe_load import safe_checkpoint_loading

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "complete.json"
TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dir_name(step: int) -> str:
    """``10`` -> ``step-00000010`` (sorts by name)."""
    return f"step-{step:08d}"


def capture_rng() -> dict[str, Any]:
    """This process's python, numpy and torch (CPU and CUDA) RNG states as JSON-safe values."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(mt), gauss],
        "numpy": [np_name, np_keys.tolist(), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def latest_complete(checkpoints_uri: str) -> tuple[int, str] | None:
    """(step, uri) of the newest checkpoint folder that has ``complete.json``; None when there is none."""
    found = []
    for name in storage.listdir(checkpoints_uri):
        match = _STEP_DIR.match(name)
        if match and storage.exists(storage.join(checkpoints_uri, name, COMPLETE_MARKER)):
            found.append((int(match.group(1)), storage.join(checkpoints_uri, name)))
    return max(found) if found else None


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@dataclass
class CheckpointManager:
    """Saves and restores DeepSpeed engine + trainer state under ``<output_uri>/checkpoints``."""

    output_uri: str
    keep_last: int
    rank: int = 0

    @property
    def checkpoints_uri(self) -> str:
        return storage.join(self.output_uri, "checkpoints")

    def save(self, engine: Any, step: int, trainer_state: dict[str, Any]) -> str:
        """Write checkpoint ``step`` (collective); returns its URI once complete on every rank."""
        name = step_dir_name(step)
        final_uri = storage.join(self.checkpoints_uri, name)
        remote = storage.is_remote(self.output_uri)
        if remote:
            staging_root = tempfile.mkdtemp(prefix=f"vega3d-ckpt-rank{self.rank}-")
            tag = name
        else:
            staging_root = self.checkpoints_uri
            tag = f".tmp-{name}"
            if self.rank == 0:
                shutil.rmtree(Path(staging_root, tag), ignore_errors=True)  # a stale partial write
            _barrier()
        folder = Path(staging_root, tag)
        try:
            engine.save_checkpoint(staging_root, tag=tag, save_latest=False)
            Path(folder, f"rng_rank{self.rank}.json").write_text(json.dumps(capture_rng()))
            if self.rank == 0:
                Path(folder, TRAINER_STATE).write_text(json.dumps(trainer_state))
            if remote:
                self._upload(folder, final_uri)
            _barrier()
            if self.rank == 0:
                marker = json.dumps({"step": step, "world_size": _world_size()})
                if remote:
                    storage.write_text(storage.join(final_uri, COMPLETE_MARKER), marker)
                else:
                    Path(folder, COMPLETE_MARKER).write_text(marker)
                    shutil.rmtree(final_uri, ignore_errors=True)
                    os.replace(folder, final_uri)
                self.prune()
            _barrier()
        finally:
            if remote:
                shutil.rmtree(staging_root, ignore_errors=True)
        logger.info("checkpoint %s complete", final_uri)
        return final_uri

    @staticmethod
    def _upload(folder: Path, uri: str) -> None:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            storage.upload_file(path, storage.join(uri, path.relative_to(folder).as_posix()))

    def prune(self) -> None:
        """Delete all but the newest ``keep_last`` complete checkpoints, and every partial folder (left by an
        interrupted write; prune runs on rank 0 right after a save completes, when no write is in progress)."""
        complete, partial = [], []
        for name in storage.listdir(self.checkpoints_uri):
            match = _STEP_DIR.match(name)
            if name.startswith(".tmp-"):
                partial.append(name)
            elif match:
                is_complete = storage.exists(storage.join(self.checkpoints_uri, name, COMPLETE_MARKER))
                (complete if is_complete else partial).append(name)
        complete.sort()
        for name in complete[: -self.keep_last] + partial:
            storage.remove(storage.join(self.checkpoints_uri, name), recursive=True)

    def resume(self, engine: Any) -> dict[str, Any] | None:
        """Load the latest complete checkpoint into ``engine`` and this rank's RNG (collective).

        Returns the trainer state saved with it, or None when there is no complete checkpoint.
        """
        found = _broadcast(latest_complete(self.checkpoints_uri) if self.rank == 0 else None)
        if found is None:
            return None
        step, uri = found
        if storage.is_remote(uri):
            local_root = tempfile.mkdtemp(prefix=f"vega3d-resume-rank{self.rank}-")
            _download_folder(uri, Path(local_root, step_dir_name(step)))
        else:
            local_root = str(Path(uri).parent)
        try:
            folder = Path(local_root, step_dir_name(step))
            with safe_checkpoint_loading(engine):  # weights_only: a planted pickle in checkpoints/ is refused
                load_path, _ = engine.load_checkpoint(
                    local_root, tag=step_dir_name(step), load_optimizer_states=True, load_lr_scheduler_states=True
                )
            if load_path is None:
                raise RuntimeError(f"DeepSpeed could not load the checkpoint at {uri}; delete it to start over")
            state = json.loads(Path(folder, TRAINER_STATE).read_text())
            rng_file = Path(folder, f"rng_rank{self.rank}.json")
            if rng_file.exists():
                restore_rng(json.loads(rng_file.read_text()))
            else:
                logger.warning("%s has no RNG state for rank %d (world size changed); RNG not restored", uri, self.rank)
        finally:
            if storage.is_remote(uri):
                shutil.rmtree(local_root, ignore_errors=True)
        logger.info("resumed from %s (step %d)", uri, step)
        return state


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _download_folder(uri: str, local: Path) -> None:
    fs, path = storage.filesystem(uri)
    for remote_file in storage.with_retries(lambda: fs.find(path), what=f"list {uri}"):
        relative = remote_file[len(path.rstrip("/")) + 1 :]
        storage.download_file(f"{uri.rstrip('/')}/{relative}", local / relative)
