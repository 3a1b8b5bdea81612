"""``vega3d demo``: the whole pipeline on this machine, on tiny models and synthetic scenes.

1. start SeaweedFS (S3) and an MLflow server (SQL backend, artifacts proxied to S3) on loopback;
2. synthesise ScanNet-layout scenes with the five benchmarks, write tiny random checkpoints in the real
   formats (LLaVA-Video layout, Wan2.1 diffusers layout) and upload the data root to the bucket;
3. run the Kubeflow pipeline through ``kfp.local.SubprocessRunner(use_venv=False)`` (``--containers``: every
   step in the vega3d-cpu image through ``kfp.local.DockerRunner``, see ``pipelines.runners``);
4. print the benchmark table and the MLflow URL, then stop the services (``keep`` leaves them running).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vega3d import staging
from vega3d.config import SyntheticConfig, load_config
from vega3d.logs import log_to_file
from vega3d.params import pipeline_overrides

if TYPE_CHECKING:
    from pipelines.outcome import RunOutcome

logger = logging.getLogger(__name__)

DEMO_EXPERIMENT = "vega3d-demo"
DEMO_BUCKET = "vega3d"
# About 30 epochs of the default synthetic train set at batch 4 (about 3 minutes of training on one thread):
# enough for the tiny model to learn the QA answer priors and to ground descriptions (batch 2 leaves the
# grounding take-off to chance; see README "What the tiny model learns").
DEMO_PARAMS = {"preset": "tiny", "max_steps": 4000, "overrides": ["train.per_device_batch_size=4"]}


@dataclass(frozen=True)
class DemoResult:
    """Where the demo's results are: the run's outcome (report and MLflow links) and the tasks it executed."""

    outcome: RunOutcome
    executed: list[str]


def _benchmark_strings(node) -> Iterator[str]:
    if isinstance(node, str):
        if any(c.isalpha() for c in node):  # sentences and one-word answers ("brown", "three"), not ids/numbers
            yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _benchmark_strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _benchmark_strings(value)


def benchmark_corpus(data_root: Path) -> list[str]:
    """Every text of the raw benchmark files (descriptions, questions, answers, situations)."""
    sentences: list[str] = []
    for path in sorted((data_root / "benchmark").rglob("*.json")):
        sentences.extend(_benchmark_strings(json.loads(path.read_text())))
    return sentences


def prepare_demo_data(data_root: Path, preset: str = "tiny", synthetic: SyntheticConfig | None = None) -> None:
    """Synthetic scenes + benchmarks + tiny checkpoints under ``data_root`` (skipped parts already there).

    ``synthetic`` overrides the preset's data set size (tests use a smaller one).
    """
    from vega3d.testing.synthetic import truth_path
    from vega3d.testing.synthetic_benchmarks import synthesize_root
    from vega3d.testing.tiny_generative import write_tiny_wan
    from vega3d.testing.tiny_llava import default_corpus, write_tiny_llava_video

    cfg = load_config(preset, [f"data.root={data_root}"]).with_paths_under_root()
    if not truth_path(data_root).exists():
        count = synthesize_root(data_root, synthetic or cfg.data.synthetic)
        logger.info("synthesised %d scenes under %s", count, data_root)
    if not (Path(cfg.model.checkpoint) / "config.json").exists():
        write_tiny_llava_video(cfg.model.checkpoint, cfg.model, corpus=default_corpus() + benchmark_corpus(data_root))
    if cfg.generative.backbone == "wan_t2v" and not (Path(cfg.generative.checkpoint) / "transformer").exists():
        write_tiny_wan(cfg.generative.checkpoint, "t2v")


def upload_data_root(data_local: Path, data_uri: str) -> int:
    """Upload the raw data root (scenes, benchmarks, checkpoints) to the storage root; returns files uploaded."""
    from vega3d.stages import DATA_SUBPATHS

    return staging.stage_up(data_local, data_uri, [p for p in DATA_SUBPATHS if (data_local / p).exists()])


def run_demo(
    workdir: Path,
    keep: bool = False,
    params: dict | None = None,
    say: Callable[[str], None] = logger.info,
    runner: str = "subprocess",
) -> DemoResult:
    """Run the demo end to end (see the module docstring); ``say`` gets one status line per phase and step;
    ``runner``: subprocess or docker (``pipelines.runners``).

    Each pipeline step's full log goes to ``<workdir>/logs/<n>-<step>.log`` (named in its status line).
    """
    from pipelines.local_run import run_local
    from pipelines.outcome import run_outcome
    from vega3d.testing.services import local_services

    workdir = workdir.resolve()
    params = {**DEMO_PARAMS, **(params or {})}
    data_local = workdir / "data"
    prepare_demo_data(data_local, params["preset"])
    say(f"data      synthetic scenes and tiny checkpoints under {data_local}")
    with local_services(workdir / "services", bucket=DEMO_BUCKET, keep=keep) as services:
        os.environ.update(services.env())
        # One intra-op thread per step process: the tiny model trains ~4x faster so on 2 shared cores, and the
        # evaluations run two at a time.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        say(f"services  S3 (SeaweedFS) {services.s3.endpoint}, MLflow {services.mlflow.url}")
        data_uri = services.s3.uri("data")
        uploaded = upload_data_root(data_local, data_uri)
        say(f"upload    {uploaded} files to {data_uri}")
        run_params = {**params, "storage_root": services.s3.uri(), "data_uri": data_uri,
                      "mlflow_uri": services.mlflow.url, "experiment": DEMO_EXPERIMENT}
        say(f"pipeline  one line per finished step; each step's full log in {workdir / 'logs'}")
        result = run_local(run_params, workdir / "kfp", log_dir=workdir / "logs", runner=runner)
        return DemoResult(run_outcome(run_params, result.run_id), result.executed)


def demo_overrides(params: dict) -> list[str]:
    """The dotted overrides the pipeline's setup step derives from these pipeline parameters (same order)."""
    return pipeline_overrides(params)


def demo_command(
    workdir: Annotated[Path, typer.Option(help="Folder for the demo's data, services and kfp outputs.")] = Path(".demo"),
    keep: Annotated[bool, typer.Option("--keep", help="Leave SeaweedFS and MLflow running to browse the runs.")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="Only stop services an earlier `--keep` left running.")] = False,
    max_steps: Annotated[int, typer.Option(help="Optimiser steps of the tiny training run.")] = DEMO_PARAMS["max_steps"],
    max_samples: Annotated[
        int | None, typer.Option(min=1, help="Evaluate only the first N records of each benchmark (a quick look).")
    ] = None,
    containers: Annotated[
        bool, typer.Option("--containers", help="Run every step in the vega3d-cpu image (make images).")
    ] = False,
) -> None:
    """Run the whole pipeline on this machine: services, synthetic data, tiny models, train, five evaluations."""
    from pipelines.outcome import failure_text
    from vega3d.errors import PipelineFailed
    from vega3d.testing.services import stop_recorded_services

    if stop:
        stopped = stop_recorded_services(workdir / "services")
        typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return
    log_file = workdir.resolve() / "logs" / "demo.log"
    typer.echo(f"vega3d demo: this process logs to {log_file}")
    with log_to_file(log_file):
        params: dict = {"max_steps": max_steps}
        if max_samples is not None:
            params["overrides"] = [*DEMO_PARAMS["overrides"], f"eval.max_samples={max_samples}"]
        try:
            result = run_demo(workdir, keep=keep, params=params, say=typer.echo,
                              runner="docker" if containers else "subprocess")
        except PipelineFailed as failure:  # the failed step's log tail, as `vega3d pipeline run` shows it
            typer.echo(failure_text(failure.logs))
            raise
    typer.echo(result.outcome.text())
    if keep:
        typer.echo(f"services left running; stop them with `vega3d demo --stop --workdir {workdir}`")
    else:
        typer.echo("services stopped (run with --keep to browse MLflow afterwards)")
