"""Worker run by torchrun (or directly) in the training tests: trains and writes the history as JSON.

Usage: ``python tests/train/worker.py RESULT_JSON [key=value overrides of the tiny preset...]``.
``WORKER_MODEL=toy`` (default) trains ToyModel on ToyDataset (``TOY_SIZE`` samples); ``WORKER_MODEL=tiny``
trains the tiny VEGA-3D model on the processed records of ``data.root`` (``build_training``).
With ``VEGA3D_TEST_KILL_AT_SAVE=N`` the process SIGKILLs itself in the middle of writing checkpoint N
(after DeepSpeed wrote the engine files, before the checkpoint is marked complete); with
``VEGA3D_TEST_KILL_AT_FINAL_SAVE=1`` it SIGKILLs itself after writing the final model, before publishing it;
with ``VEGA3D_TEST_KILL_S3_AT_SAVE=N`` and ``VEGA3D_TEST_S3_PGID`` it SIGKILLs the S3 server's process group
when it starts uploading checkpoint N.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.train.helpers import ToyDataset, ToyModel  # noqa: E402
from vega3d.config import load_config  # noqa: E402
from vega3d.train import checkpoints as checkpointing  # noqa: E402
from vega3d.train.collator import Vega3DCollator  # noqa: E402
from vega3d.train.factory import build_training  # noqa: E402
from vega3d.train.launch import close_rank, ensure_process_env, exit_rank  # noqa: E402
from vega3d.train.trainer import Trainer  # noqa: E402


def _kill_during_save(step_to_kill: int) -> None:
    original = checkpointing.capture_rng

    def capture_then_maybe_die():
        # capture_rng runs right after engine.save_checkpoint; the step is in the staging folder name
        if checkpointing_step[0] == step_to_kill:
            os.kill(os.getpid(), signal.SIGKILL)
        return original()

    checkpointing_step = [0]
    original_save = checkpointing.CheckpointManager.save

    def save(self, engine, step, trainer_state):
        checkpointing_step[0] = step
        return original_save(self, engine, step, trainer_state)

    checkpointing.capture_rng = capture_then_maybe_die
    checkpointing.CheckpointManager.save = save


def _kill_s3_during_upload(step: int, pgid: int) -> None:
    from vega3d import storage

    original = storage.upload_file
    fired: list[str] = []

    def upload(local, uri):
        if not fired and f"step-{step:08d}/" in uri:
            fired.append(uri)
            os.killpg(pgid, signal.SIGKILL)  # the object store dies in the middle of this checkpoint
        return original(local, uri)

    storage.upload_file = upload


def main() -> None:
    result_path, overrides = sys.argv[1], sys.argv[2:]
    ensure_process_env()
    if os.environ.get("VEGA3D_TEST_KILL_S3_AT_SAVE"):
        _kill_s3_during_upload(int(os.environ["VEGA3D_TEST_KILL_S3_AT_SAVE"]), int(os.environ["VEGA3D_TEST_S3_PGID"]))
    if os.environ.get("VEGA3D_TEST_KILL_AT_SAVE"):
        _kill_during_save(int(os.environ["VEGA3D_TEST_KILL_AT_SAVE"]))
    if os.environ.get("WORKER_MODEL", "toy") == "tiny":
        trainer = build_training(load_config("tiny", overrides).with_paths_under_root())
    else:
        torch.manual_seed(0)
        dataset = ToyDataset(int(os.environ.get("TOY_SIZE", "40")))
        trainer = Trainer(load_config("tiny", overrides), ToyModel(), dataset, Vega3DCollator(pad_token_id=0),
                          dataset.tasks)
    if os.environ.get("VEGA3D_TEST_KILL_AT_FINAL_SAVE"):
        write_model = trainer.save_model

        def write_then_die(module, state_dict, folder):
            write_model(module, state_dict, folder)
            os.kill(os.getpid(), signal.SIGKILL)

        trainer.save_model = write_then_die
    result = trainer.train()
    if trainer.rank == 0:
        Path(result_path).write_text(json.dumps({
            "model_uri": result.model_uri,
            "resumed_from_step": result.resumed_from_step,
            "history": [asdict(r) for r in result.history],
        }))
    close_rank()


if __name__ == "__main__":
    main()
    exit_rank(0)
