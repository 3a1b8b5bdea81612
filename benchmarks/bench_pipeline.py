"""Orchestration overhead of the local pipeline, and what a cached re-run saves, measured side by side:

1. the whole pipeline through kfp.local (``pipelines.local_run.run_local``: a subprocess per step, artifacts,
   the exit handler) vs the same stages called directly in one process, in the order and with the arguments
   the components use (``vega3d.stages``: setup_run, prep, extract, train, five evaluations, report,
   finalize); target pipeline / direct <= 1.2x.
2. a second pipeline run with caching on for every step vs the first run (caching on, cache empty).

Both sides run on the same tiny synthetic data (uploaded for each run, outside the timing, to its own prefix
so that no run reuses another's features, checkpoints or predictions) against real SeaweedFS and
MLflow servers started in a temporary folder. Each timed run is a fresh Python process, so each pays its own
imports. The pair is repeated with the order alternating (direct first, then pipeline first) and the median
ratio is reported, since the machine's load changes between runs; the CPU seconds of each side (the run and
every process it waited for) are printed too, a measure that other users of the machine disturb less.

    .venv/bin/python benchmarks/bench_pipeline.py [--max-steps 4] [--max-samples 4] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
REPO = Path(__file__).resolve().parents[1]
STEPS = ["prep", "extract", "train", "evaluate", "report"]


def run_direct(params: dict) -> dict[str, float]:
    """Every stage in this process, as the components call them; returns seconds per stage."""
    from vega3d import stages
    from vega3d.config import ALL_TASKS
    from vega3d.params import pipeline_overrides

    seconds: dict[str, float] = {}

    def timed(name: str, call):
        start = time.perf_counter()
        result = call()
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        return result

    run_key = params["run_id"]
    os.environ[stages.RUN_KEY_ENV] = run_key  # what run_local sets for the steps
    dotted = pipeline_overrides(params)
    config, _ = timed("setup_run", lambda: stages.setup_run(
        params["preset"], dotted, params["storage_root"], params["data_uri"], params["mlflow_uri"],
        params["experiment"], job_id=run_key,
    ))
    data_uri = timed("prep", lambda: stages.prep(config))["uri"]
    feature_id = ""
    if stages.needs_offline_features(config):
        feature_id = timed("extract", lambda: stages.extract(config, data_uri))["feature_id"]
    model_uri = timed("train", lambda: stages.train(config, data_uri, feature_id))["uri"]
    task_metrics = [
        timed("evaluate", lambda t=task: stages.evaluate(config, t, data_uri, model_uri, feature_id))
        for task in ALL_TASKS
    ]
    timed("report", lambda: stages.report(config, model_uri, task_metrics))
    timed("finalize", lambda: stages.finalize(params["mlflow_uri"], params["experiment"], run_key, "SUCCEEDED", None))
    return seconds


def run_pipeline(params: dict, pipeline_root: str) -> dict:
    """One local pipeline run with caching allowed on every step; returns the run key and executed tasks."""
    from pipelines.local_run import run_local

    result = run_local(params, pipeline_root, enable_caching=True, cached_steps=STEPS)
    return {"run_id": result.run_id, "executed": result.executed}


@dataclass(frozen=True)
class Timed:
    """One timed child run."""

    wall: float  # seconds
    cpu: float  # user + system seconds of the child and of every process it waited for (the kfp steps)
    result: dict  # the JSON the child printed last
    stdout: str


def timed_child(mode: str, params: dict, env: dict[str, str], pipeline_root: str = "") -> Timed:
    """Run ``mode`` in a fresh Python process and time it."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--params", json.dumps(params)]
    if pipeline_root:
        command += ["--pipeline-root", pipeline_root]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} run failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(wall, cpu, json.loads(proc.stdout.strip().splitlines()[-1]), proc.stdout)


def task_seconds(log: str) -> dict[str, float]:
    """Seconds per task from kfp.local's log lines ("Executing task 'x'" ... "Task 'x' finished"), summed
    over repeated tasks (the five evaluations run two at a time, so their sum exceeds their wall time)."""
    started: dict[str, list[datetime]] = {}
    seconds: dict[str, float] = {}
    for line in re.sub(r"\x1b\[[0-9;]*m", "", log).splitlines():
        match = re.match(r"(\d\d:\d\d:\d\d\.\d+) - INFO - (?:Executing task '([^']+)'|Task '([^']+)' finished)", line)
        if not match:
            continue
        stamp = datetime.strptime(match[1], "%H:%M:%S.%f")
        if match[2]:
            started.setdefault(match[2], []).append(stamp)
        elif started.get(match[3]):
            begin = started[match[3]].pop(0)
            seconds[match[3]] = seconds.get(match[3], 0.0) + (stamp - begin).total_seconds()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=4, help="optimiser steps of the tiny training run")
    parser.add_argument("--max-samples", type=int, default=4, help="eval.max_samples per benchmark")
    parser.add_argument("--repeats", type=int, default=2,
                        help="direct/pipeline pairs; the order alternates so machine load falls on both sides")
    parser.add_argument("--child", choices=["direct", "pipeline"], help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline-root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "direct":
        print(json.dumps(run_direct(json.loads(args.params))))
        return
    if args.child == "pipeline":
        print(json.dumps(run_pipeline(json.loads(args.params), args.pipeline_root)))
        return

    from vega3d.config import SyntheticConfig
    from vega3d.testing.demo import prepare_demo_data, upload_data_root
    from vega3d.testing.services import local_services

    synthetic = SyntheticConfig(num_train=2, num_val=1, num_test=1, frames=16, width=160, height=120, seed=7)
    overrides = ["generative.mode=offline", f"eval.max_samples={args.max_samples}", "train.save_steps=2"]
    pairs: list[dict[str, Timed]] = []
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as folder:
        work = Path(folder)
        prepare_demo_data(work / "data", "tiny", synthetic)
        with local_services(work / "services", bucket="vega3d-bench") as services:
            os.environ.update(services.env())
            env = {**os.environ, "VEGA3D_CACHE": str(work / "cache"),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
                   "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions")}
            experiment = f"bench-pipeline-{uuid.uuid4().hex[:6]}"

            def fresh_params(prefix: str) -> dict:
                """Parameters of one run on its own copy of the data under its own prefix (nothing reused)."""
                data_uri = services.s3.uri(prefix, "data")
                upload_data_root(work / "data", data_uri)
                return {"preset": "tiny", "max_steps": args.max_steps, "overrides": overrides,
                        "storage_root": services.s3.uri(prefix), "data_uri": data_uri,
                        "mlflow_uri": services.mlflow.url, "experiment": experiment}

            for repeat in range(args.repeats):
                pair: dict[str, Timed] = {}
                for side in ("direct", "pipeline") if repeat % 2 == 0 else ("pipeline", "direct"):
                    params = fresh_params(f"{side}-{repeat}")
                    if side == "direct":
                        params["run_id"] = f"direct-{uuid.uuid4().hex[:8]}"
                        pair[side] = timed_child("direct", params, env)
                        continue
                    kfp_root = str(work / f"kfp-{repeat}")
                    pair[side] = timed_child("pipeline", params, env, kfp_root)
                    if repeat == 0:
                        cached = timed_child("pipeline", params, env, kfp_root)
                pairs.append(pair)

    first = pairs[0]["pipeline"]
    recomputed = sorted(set(STEPS) & set(cached.result["executed"]))
    ratios = [pair["pipeline"].wall / pair["direct"].wall for pair in pairs]
    cpu_ratios = [pair["pipeline"].cpu / pair["direct"].cpu for pair in pairs]
    print(f"tiny preset, train.max_steps={args.max_steps}, eval.max_samples={args.max_samples}, "
          f"{synthetic.num_train}/{synthetic.num_val}/{synthetic.num_test} scenes, {args.repeats} repeats")
    print("direct stages (s), repeat 1 : " + ", ".join(f"{k} {v:.1f}" for k, v in pairs[0]["direct"].result.items()))
    print("pipeline tasks (s), repeat 1: " + ", ".join(f"{k} {v:.1f}" for k, v in task_seconds(first.stdout).items()))
    for index, pair in enumerate(pairs):
        direct, pipeline = pair["direct"], pair["pipeline"]
        print(f"repeat {index + 1} ({'direct' if index % 2 == 0 else 'pipeline'} first): "
              f"direct, one process {direct.wall:6.1f} s (cpu {direct.cpu:6.1f} s), "
              f"pipeline {pipeline.wall:6.1f} s (cpu {pipeline.cpu:6.1f} s) -> {ratios[index]:.2f}x")
    print(f"pipeline, cached re-run  : {cached.wall:7.1f} s  (stages re-executed: {recomputed or 'none'}; "
          f"tasks executed: {', '.join(cached.result['executed'])})")
    print(f"pipeline / direct, wall  : {statistics.median(ratios):.2f}x median over {len(ratios)} "
          f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x; target <= 1.2x)")
    print(f"pipeline / direct, cpu   : {statistics.median(cpu_ratios):.2f}x median (less sensitive to other load)")
    print(f"cached re-run / first run: {cached.wall / first.wall:.2f}x")


if __name__ == "__main__":
    main()
