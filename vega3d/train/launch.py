"""Process launching for training: torchrun on this machine, or run as one rank of a cluster's torchrun.

- ``vega3d train --num-gpus N`` (N > 1, not already inside torchrun) starts
  ``torchrun --standalone --nproc_per_node=N -m vega3d.train.launch --config <resolved.yaml>``; every rank runs
  :func:`vega3d.train.run.train_in_process` (gloo on CPU, nccl on GPU, chosen by the trainer).
- Inside a torchrun started by a cluster (``RANK``/``WORLD_SIZE`` already set, e.g. a Kubeflow TrainJob), the
  same command trains in-process as that rank.
- A single process still needs the torch.distributed variables: :func:`ensure_process_env` sets ``RANK=0``,
  ``WORLD_SIZE=1``, ``LOCAL_RANK=0``, ``MASTER_ADDR=127.0.0.1`` and a free ``MASTER_PORT``.
- A one-process world never listens beyond loopback (``vega3d.train.trainer.init_single_process_group``).
- ``TORCH_EXTENSIONS_DIR`` defaults to ``.cache/torch_extensions`` so DeepSpeed's ops compile once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

logger = logging.getLogger(__name__)

EXTENSIONS_DIR = Path(".cache") / "torch_extensions"


def inside_torchrun() -> bool:
    """True when this process is one rank of an existing torch.distributed launch."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_process_env() -> None:
    """Set the torch.distributed variables of a one-process world (kept when already set) and the op cache."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(EXTENSIONS_DIR.resolve()))
    if inside_torchrun():
        os.environ.setdefault("LOCAL_RANK", os.environ["RANK"])
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        return
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))


def torchrun_command(nproc: int, config_path: str, result_path: str, parent_run_id: str | None) -> list[str]:
    """The torchrun command line that runs ``nproc`` ranks of this module on this machine."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "vega3d.train.launch", "--config", config_path, "--result", result_path,
    ]
    if parent_run_id:
        command += ["--parent-run-id", parent_run_id]
    return command


@dataclass
class TrainSummary:
    """What a finished training reports back: the final model URI and summary metrics."""

    model_uri: str
    metrics: dict[str, float]

    def summary_metrics(self) -> dict[str, float]:
        return dict(self.metrics)


def launch_training(cfg, nproc: int, parent_run_id: str | None = None) -> TrainSummary:
    """Train with ``nproc`` local processes (or as a rank of an enclosing torchrun)."""
    from vega3d.config import save_config

    if os.environ.get("RANK", "0") == "0":  # fail fast: output, data root, tracking (vega3d.preflight)
        from vega3d.preflight import preflight

        preflight([cfg.train.output_uri], cfg.data.root, cfg.tracking.uri)

    if nproc <= 1 or inside_torchrun():
        ensure_process_env()
        from vega3d.train.run import train_in_process

        result = train_in_process(cfg, parent_run_id=parent_run_id)
        return TrainSummary(result.model_uri, result.summary_metrics())
    with tempfile.TemporaryDirectory(prefix="vega3d-train-") as folder:
        config_path, result_path = os.path.join(folder, "config.yaml"), os.path.join(folder, "result.json")
        save_config(cfg, config_path)
        env = dict(os.environ)
        env.setdefault("TORCH_EXTENSIONS_DIR", str(EXTENSIONS_DIR.resolve()))
        command = torchrun_command(nproc, config_path, result_path, parent_run_id)
        logger.info("launching %s", " ".join(command))
        completed = subprocess.run(command, env=env, check=False)
        if completed.returncode != 0:
            raise RuntimeError(f"torchrun with {nproc} processes failed with exit code {completed.returncode}")
        return TrainSummary(**json.loads(Path(result_path).read_text()))


def exit_rank(code: int = 0) -> NoReturn:
    """End a torchrun rank right after its work: flush the output, then ``os._exit``.

    Skipping the interpreter's teardown is deliberate: after a successful run, torch's gloo and DeepSpeed's
    background threads can still be alive when C++ static destructors run, and the process then aborts with
    "terminate called without an active exception" (seen with ZeRO-3 on CPU), failing a finished job.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of each torchrun rank: train from a resolved config file."""
    parser = argparse.ArgumentParser(description="one rank of vega3d training (started by torchrun)")
    parser.add_argument("--config", required=True, help="resolved config YAML")
    parser.add_argument("--result", help="rank 0 writes {'model_uri': ..., 'metrics': {...}} here")
    parser.add_argument("--parent-run-id", default=None, help="MLflow parent run id")
    args = parser.parse_args(argv)
    import yaml

    from vega3d.logs import setup_logging

    setup_logging()  # the level the launching command was given (VEGA3D_VERBOSITY), in the one log format

    from vega3d.config import build_config
    from vega3d.train.run import train_in_process

    ensure_process_env()
    cfg = build_config(yaml.safe_load(Path(args.config).read_text()))
    result = train_in_process(cfg, parent_run_id=args.parent_run_id)
    if args.result and int(os.environ.get("RANK", "0")) == 0:
        Path(args.result).write_text(json.dumps({"model_uri": result.model_uri, "metrics": result.summary_metrics()}))
    close_rank()


def close_rank() -> None:
    """Wait for every rank (rank 0 has written its result), then take the process group down."""
    import torch.distributed

    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
    exit_rank(0)
