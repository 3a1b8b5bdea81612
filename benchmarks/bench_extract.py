"""Feature extraction speed: Wan early exit vs the full DiT, and `vega3d extract` scenes/s with 1 and 2 workers.

1. A tiny-width but full-depth Wan2.1 T2V (30 blocks, tap at block 20), written to disk in the diffusers layout
   and loaded through the real loader. Side by side in one run (interleaved rounds, best of each):
     - DiT only: early exit (blocks 0..20, no head) vs the full forward with a hook on block 20;
     - whole encoder (resize, VAE, noise, DiT, pooling): early exit vs full;
   the ratios early/full (DiT target <= 0.72, the block fraction 21/30 plus the shared preamble) and a check
   that the features are bit-identical.
2. `vega3d extract` as a subprocess on a synthetic data root with the tiny preset (``--frames`` frames per
   scene at ``--size``), 1 worker vs 2 workers: scenes/s by wall clock (process start and model load included)
   and over the extraction loop only (from each worker's JSON summary), and the ratios.

    .venv/bin/python benchmarks/bench_extract.py [--frames 8] [--size 224] [--rounds 5] [--scenes 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def best_times(funcs: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Best wall time of each function over interleaved rounds (after one warm-up call each)."""
    for func in funcs.values():
        func()
    best = {name: float("inf") for name in funcs}
    for _ in range(rounds):
        for name, func in funcs.items():
            start = time.perf_counter()
            func()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def bench_early_exit(folder: Path, frames: int, size: int, rounds: int) -> None:
    """Part 1: early exit vs full forward on a 30-block tiny-width Wan."""
    import torch

    from vega3d.config import GenerativeConfig
    from vega3d.generative.wan import build_wan
    from vega3d.testing.tiny_generative import write_tiny_wan

    checkpoint, _ = write_tiny_wan(folder / "wan-30", num_layers=30)
    cfg = GenerativeConfig(checkpoint=str(checkpoint), block=20, resolution=(size, size))
    encoder = build_wan(cfg, grid=14, device="cpu", variant="t2v")
    clip = torch.rand(frames, 3, 480, 640, generator=torch.Generator().manual_seed(0))
    ids = list(range(0, 10 * frames, 10))
    with torch.inference_mode():
        inputs = encoder.dit_inputs(encoder.preprocess(clip), "scene0000_00", ids)
        early = encoder.dit_features(inputs, early_exit=True)
        full = encoder.dit_features(inputs, early_exit=False)
    assert torch.equal(early, full), "early exit changed the DiT features"

    def encode(flag: bool) -> torch.Tensor:
        encoder.early_exit = flag
        return encoder.encode(clip, "scene0000_00", ids)

    assert torch.equal(encode(True), encode(False)), "early exit changed the encoder features"
    with torch.inference_mode():
        dit = best_times({"early": lambda: encoder.dit_features(inputs, True),
                          "full": lambda: encoder.dit_features(inputs, False)}, rounds)
    whole = best_times({"early": lambda: encode(True), "full": lambda: encode(False)}, rounds)
    tokens = inputs["hidden_states"].shape[-1] * inputs["hidden_states"].shape[-2] // 4
    print(f"Wan DiT 30 blocks x width {encoder.channels}, tap block 20, {frames} frames of {size}x{size} "
          f"({tokens} tokens each), best of {rounds}:")
    print(f"  DiT only      early {dit['early'] * 1e3:8.1f} ms   full {dit['full'] * 1e3:8.1f} ms   "
          f"ratio {dit['early'] / dit['full']:.3f} (target <= 0.72)   features identical: True")
    print(f"  whole encoder early {whole['early'] * 1e3:8.1f} ms   full {whole['full'] * 1e3:8.1f} ms   "
          f"ratio {whole['early'] / whole['full']:.3f}   features identical: True")


def bench_workers(folder: Path, scenes: int, frames: int, size: int) -> None:
    """Part 2: `vega3d extract` scenes/s with 1 and 2 worker processes."""
    from vega3d.config import SyntheticConfig
    from vega3d.testing.synthetic import synthesize_scenes
    from vega3d.testing.tiny_generative import write_tiny_wan

    root = folder / "data"
    synthesize_scenes(root, SyntheticConfig(num_train=scenes - 2, num_val=1, num_test=1, frames=16,
                                            width=160, height=120, seed=0))
    write_tiny_wan(root / "models" / "tiny-wan-t2v")
    env = {**os.environ, "VEGA3D_CACHE": str(folder / "cache")}
    rates, loop_rates = {}, {}
    for workers in (1, 2):
        store = folder / f"features-{workers}"
        args = [sys.executable, "-m", "vega3d.cli", "extract", "--set", f"data.root={root}", "--store", str(store),
                "--set", f"data.frames_upbound={frames}", "--set", f"generative.resolution=[{size},{size}]",
                "--workers", str(workers), "--no-progress"]
        start = time.perf_counter()
        result = subprocess.run(args, check=True, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        written = sum(1 for _ in store.rglob("*.safetensors"))
        assert written == scenes, f"{workers} worker(s) wrote {written} of {scenes} feature files"
        summaries = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        assert len(summaries) == workers and sum(s["scenes"] for s in summaries) == scenes
        rates[workers] = scenes / seconds
        loop_rates[workers] = scenes / max(s["seconds"] for s in summaries)
        print(f"  vega3d extract --workers {workers}: {scenes} scenes in {seconds:6.1f} s wall = {rates[workers]:.3f} "
              f"scenes/s (process start + model load included); extraction loop only {loop_rates[workers]:.3f} scenes/s")
    print(f"  2 workers / 1 worker: {rates[2] / rates[1]:.2f}x wall, {loop_rates[2] / loop_rates[1]:.2f}x loop "
          f"on {os.cpu_count()} cores")
    print(json.dumps({"scenes_per_s_1": round(rates[1], 4), "scenes_per_s_2": round(rates[2], 4),
                      "loop_scenes_per_s_1": round(loop_rates[1], 4), "loop_scenes_per_s_2": round(loop_rates[2], 4)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames per encode call")
    parser.add_argument("--size", type=int, default=224, help="square encoder input size")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--scenes", type=int, default=8, help="synthetic scenes for the worker benchmark")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        os.environ["VEGA3D_CACHE"] = str(Path(tmp) / "cache")
        bench_early_exit(Path(tmp), args.frames, args.size, args.rounds)
        bench_workers(Path(tmp), args.scenes, args.frames, args.size)


if __name__ == "__main__":
    main()
