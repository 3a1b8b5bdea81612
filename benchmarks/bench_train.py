"""Training throughput of the tiny preset on CPU, measured side by side through ``vega3d train``:

1. offline vs online generative features (tiny Wan2.1-T2V): samples/s with features read from the feature
   store (``vega3d extract`` first) vs computed by the encoder in the data path. The online cache is off
   (``generative.cache_size=0``): on the real data a 64-entry cache meets 1201 scenes in shuffled order and
   rarely hits, so every sample pays the encoder; target offline >= 1.5x online.
2. ZeRO-2 with 2 processes vs 1 process (baseline model, same micro batch per process), global samples/s.

Each run trains ``--steps`` optimiser steps in a fresh process with one intra-op thread per process;
throughput = samples / time over the steps after the first ``--warmup`` (first visit of each scene's frames,
first allocations), from the run's train_history.json.

    .venv/bin/python benchmarks/bench_train.py [--steps 40] [--warmup 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]


def build_root(folder: Path) -> Path:
    """Synthetic scenes (4 train) + benchmarks + prep + tiny LLaVA-Video and Wan checkpoints."""
    from vega3d.config import SyntheticConfig, load_config
    from vega3d.data.prep import run_prep
    from vega3d.testing.synthetic import synthesize_scenes
    from vega3d.testing.synthetic_benchmarks import write_benchmarks
    from vega3d.testing.tiny_generative import write_tiny_wan
    from vega3d.testing.tiny_llava import write_tiny_llava_video

    root = folder / "data"
    synth = SyntheticConfig(num_train=4, num_val=1, num_test=1, frames=16, width=160, height=120, seed=5)
    truths = synthesize_scenes(root, synth)
    write_benchmarks(root, truths, synth.seed)
    cfg = load_config("tiny", [f"data.root={root}"]).with_paths_under_root()
    run_prep(root, cfg.data, progress=False)
    write_tiny_llava_video(cfg.model.checkpoint, cfg.model)
    write_tiny_wan(cfg.generative.checkpoint, "t2v")
    return root


def cli(args: list[str]) -> str:
    # One intra-op thread per process in every run (torchrun's own default for N > 1): on a small shared
    # machine two spinning OpenMP threads per process make step times swing by 10x.
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "vega3d.cli", *args], env=env, capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"vega3d {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def train_throughput(root: Path, output: Path, sets: list[str], steps: int, warmup: int, nproc: int = 1) -> float:
    """Global samples/s of a ``vega3d train`` run over its steps after ``warmup``."""
    args = ["train", "--preset", "tiny", "--output", str(output), "--nproc", str(nproc), "--no-resume",
            "--set", f"data.root={root}", "--set", f"train.max_steps={steps}", "--set", "train.save_steps=100000"]
    for item in sets:
        args += ["--set", item]
    cli(args)
    records = json.loads((output / "train_history.json").read_text())[warmup:]
    per_step = int(sets_value(sets, "train.per_device_batch_size", 2)) * nproc
    seconds = sum(per_step / r["samples_per_s"] for r in records)
    return per_step * len(records) / seconds


def sets_value(sets: list[str], key: str, default: object) -> str:
    values = [s.split("=", 1)[1] for s in sets if s.startswith(key + "=")]
    return values[-1] if values else str(default)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out of the throughput")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        folder = Path(tmp)
        root = build_root(folder)
        extracted = json.loads(cli(["extract", "--preset", "tiny", "--set", f"data.root={root}", "--split", "train",
                                    "--no-progress"]))
        feature_id = extracted["feature_id"]
        online = train_throughput(root, folder / "online", ["generative.mode=online", "generative.cache_size=0"],
                                  args.steps, args.warmup)
        offline = train_throughput(root, folder / "offline", ["generative.mode=offline",
                                                              f"generative.feature_id={feature_id}"],
                                   args.steps, args.warmup)
        base = ["generative.backbone=none", "train.zero_stage=2"]
        one = train_throughput(root, folder / "z2-1", base, args.steps, args.warmup, nproc=1)
        two = train_throughput(root, folder / "z2-2", base, args.steps, args.warmup, nproc=2)
    print(f"generative features  online  {online:7.2f} samples/s")
    print(f"generative features  offline {offline:7.2f} samples/s")
    print(f"offline / online ratio       {offline / online:7.2f}x (target >= 1.5x)")
    print(f"ZeRO-2 1 process             {one:7.2f} samples/s")
    print(f"ZeRO-2 2 processes           {two:7.2f} samples/s")
    print(f"2-process / 1-process ratio  {two / one:7.2f}x (1 thread per process, {os.cpu_count()} CPU cores)")


if __name__ == "__main__":
    main()
