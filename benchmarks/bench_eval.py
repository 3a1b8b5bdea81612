"""Evaluation throughput on the tiny preset: batched vs batch-1 inference, and the metric share of the time.

Builds a small synthetic data root and a tiny random LLaVA-Video checkpoint (baseline, no generative branch)
in a temporary folder, then for ScanQA (greedy generation), ScanRefer and Multi3DRefer (one ``<ground>`` forward;
object features, patch membership and the head batched in tensor ops):
  samples/s at batch size 1 and at batch size B, measured side by side on the same records (scene inputs
  cached and warmed first, so both runs time the model; best of interleaved rounds), and the ratio
(target >= 3x);
and the share of an evaluation's time (inference at batch B + scoring) spent in metric computation
(ScanQA with and without METEOR, whose Java start costs seconds once per scoring; grounding IoU metrics).

    .venv/bin/python benchmarks/bench_eval.py [--records 48] [--batch-size 8] [--tasks scanrefer multi3drefer]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def build_root(folder: Path):
    """Synthetic scenes + benchmarks + prep + tiny checkpoint; returns the config pointing at them."""
    from vega3d.config import SyntheticConfig, load_config
    from vega3d.data.prep import run_prep
    from vega3d.testing.synthetic import synthesize_scenes
    from vega3d.testing.synthetic_benchmarks import write_benchmarks
    from vega3d.testing.tiny_llava import write_tiny_llava_video

    root = folder / "data"
    cfg = load_config("tiny", ["generative.backbone=none", "eval.max_new_tokens=24", f"data.root={root}"])
    synth = SyntheticConfig(num_train=1, num_val=1, num_test=1, frames=16, width=160, height=120, seed=3)
    truths = synthesize_scenes(root, synth)
    write_benchmarks(root, truths, synth.seed)
    run_prep(root, cfg.data, progress=False)
    write_tiny_llava_video(root / cfg.model.checkpoint, cfg.model)
    return cfg


def repeat_records(records: list[dict], count: int) -> list[dict]:
    """``count`` records cycling through the split, with unique ids."""
    return [{**records[i % len(records)], "id": f"{records[i % len(records)]['id']}#{i}"} for i in range(count)]


def timed_inference(predict, records: list[dict], batch_size: int) -> tuple[list[dict], float]:
    started = time.perf_counter()
    preds: list[dict] = []
    for start in range(0, len(records), batch_size):
        preds += predict(records[start : start + batch_size])
    return preds, time.perf_counter() - started


def main() -> None:
    import torch

    from vega3d.evaluation import predictors, tasks
    from vega3d.evaluation.predictions import validate_predictions

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best of each is kept)")
    parser.add_argument("--tasks", nargs="+", default=["scanqa", "scanrefer", "multi3drefer"],
                        choices=["scanqa", "scanrefer", "multi3drefer"], help="tasks to measure")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as folder:
        cfg = build_root(Path(folder))
        device = predictors.eval_device()
        model, tokenizer = predictors.load_eval_model(cfg, 0, device)
        print(f"device {device}, {args.records} records per task, batch {args.batch_size} vs 1")
        print(f"{'task':12s} {'b=1 samples/s':>14s} {'b=B samples/s':>14s} {'speedup':>8s} {'metric share':>13s} {'w/o METEOR':>15s}")
        for task in args.tasks:
            split = tasks.DEFAULT_SPLITS[task]
            proposals = tasks.load_proposals(cfg.data.root, split) if task in tasks.GROUNDING_TASKS else None
            predict = predictors.ModelPredictor(model, tokenizer, cfg, task, proposals)
            records = repeat_records(tasks.load_records(cfg.data.root, task, split), args.records)
            predict(records[: args.batch_size])  # warm-up: scene inputs cached, kernels initialised
            single = batched = float("inf")
            for _ in range(args.rounds):  # interleaved rounds, best of each: robust to load from other processes
                single = min(single, timed_inference(predict, records, 1)[1])
                preds, seconds = timed_inference(predict, records, args.batch_size)
                batched = min(batched, seconds)
            shares = []
            for meteor in (True, False):
                started = time.perf_counter()
                pset = validate_predictions(task, [r["id"] for r in records], [(None, p) for p in preds])
                tasks.score(task, records, pset, tasks.ScoreSettings(meteor=meteor))
                scoring = time.perf_counter() - started
                shares.append(100 * scoring / (scoring + batched))
            n = len(records)
            print(f"{task:12s} {n / single:14.1f} {n / batched:14.1f} {single / batched:7.2f}x "
                  f"{shares[0]:12.1f}% {shares[1]:14.1f}%")


if __name__ == "__main__":
    main()
