"""The VEGA-3D pipeline: setup -> prep -> extract (offline features only) -> train -> 5 evaluations -> report.

The pipeline's parameters, their defaults and the descriptions shown in the Kubeflow run form are generated
from ``vega3d.params`` (the one declared parameter surface): config settings are optional (empty keeps the
preset's value) and reach ``setup_run`` as one ``settings`` mapping. An ExitHandler closes the MLflow parent run
(FAILED when any step failed). Caching is off by default and opted into per step with ``cached_steps`` at
compile time. Placement (accelerator, node selector, tolerations, /dev/shm, secrets, requests) is applied by
``pipelines.placement`` and follows the preset: tiny requests no GPU.
"""

import inspect
from collections.abc import Callable, Iterable
from typing import Any, Optional

from kfp import dsl

from components.evaluate import evaluate
from components.extract import extract, extract_shards, merge_extract_shards
from components.features import features_needed, no_features
from components.finalize import finalize
from components.prep import prep
from components.report import report
from components.setup_run import setup_run
from components.train import train
from components.train_multinode import train_multinode
from pipelines.placement import Placement, apply_cpu_step, apply_gpu_step
from vega3d.benchmarks import ALL_TASKS
from vega3d.params import RUN_PARAMS, SETTINGS, settings_for

PIPELINE_NAME = "vega3d"
STEPS = ("prep", "extract", "train", "evaluate", "report")
PIPELINE_SETTINGS = settings_for("pipeline")


def pipeline_signature(
    preset: str = "tiny", overrides: Iterable[str] = (), settings: Iterable[str] | None = None
) -> inspect.Signature:
    """The pipeline's parameters: the run parameters (``preset`` and ``overrides`` defaults as given), then the
    settings (all, or those named in ``settings``), each optional with no default (the preset's value)."""
    defaults = {"preset": preset, "overrides": list(overrides)}
    run = [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=defaults.get(p.name, p.default),
                             annotation=p.type) for p in RUN_PARAMS]
    settings = [inspect.Parameter(s.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=s.default,
                                  annotation=s.type if s.default is not None else Optional[s.type])  # noqa: UP045
                for s in PIPELINE_SETTINGS if settings is None or s.name in set(settings)]  # kfp: Optional = optional
    return inspect.Signature(run[:1] + settings + run[1:])


def pipeline_docstring() -> str:
    """Module summary plus one ``Args:`` line per parameter: kfp turns these into the run form's descriptions."""
    lines = [__doc__.splitlines()[0], "", "Args:"]
    lines += [f"    {p.name}: {p.help}" for p in RUN_PARAMS]
    lines += [f"    {s.name}: {s.description}" for s in PIPELINE_SETTINGS]
    return "\n".join(lines) + "\n"


def _with_signature(body: Callable[[dict[str, Any]], None], signature: inspect.Signature) -> Callable[..., None]:
    """A function kfp reads as having ``signature`` that hands the bound arguments to ``body`` as a dict."""

    def vega3d_pipeline(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        body(dict(bound.arguments))

    vega3d_pipeline.__signature__ = signature
    vega3d_pipeline.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    vega3d_pipeline.__doc__ = pipeline_docstring()
    return vega3d_pipeline


def build_pipeline(
    cached_steps: Iterable[str] = (),
    placement: Placement | None = None,
    local: bool = False,
    preset: str = "tiny",
    overrides: Iterable[str] = (),
    given: Iterable[str] | None = None,
):
    """Return the pipeline function; ``cached_steps`` names the steps that may come from the cache.

    ``preset`` and ``overrides`` become the defaults of those parameters; ``placement`` defaults to the
    preset's (``Placement.for_preset``). ``local=True`` builds the same DAG for kfp.local minus what only a
    cluster has: the cluster placement (kfp.local ignores it, and cannot resolve runtime accelerator
    parameters inside nested groups) and the multi-node TrainJob branch (kfp.local cannot select between two
    artifacts with OneOf); its five evaluations are one ParallelFor (kfp.local runs two at a time) rather than
    five nodes named by benchmark (which it would run one by one). kfp.local cannot run a pipeline with an optional parameter nobody set, so there
    ``given`` (the names the caller sets) limits the settings declared and handed to setup.
    """
    placement = placement or Placement.for_preset(preset)
    cached = set(cached_steps)
    unknown = cached - set(STEPS)
    if unknown:
        raise ValueError(f"unknown steps to cache {sorted(unknown)}; choose from {list(STEPS)}")
    passed = [s.name for s in PIPELINE_SETTINGS if given is None or s.default is not None or s.name in set(given)]

    def _cache(task, step: str):
        task.set_caching_options(step in cached)
        return task

    def body(p: dict[str, Any]) -> None:
        exit_task = finalize(mlflow_uri=p["mlflow_uri"], experiment=p["experiment"],
                             job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        exit_task.set_caching_options(False)
        with dsl.ExitHandler(exit_task, name="vega3d-run"):
            setup = setup_run(
                preset=p["preset"], settings={name: p[name] for name in passed}, overrides=p["overrides"],
                storage_root=p["storage_root"], data_uri=p["data_uri"], mlflow_uri=p["mlflow_uri"],
                experiment=p["experiment"], run_name=p["run_name"], job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                num_nodes=p["num_nodes"], gpu_memory_gib=p["gpu_memory_gib"],
            ).set_caching_options(False)
            config = setup.outputs["config"]
            data = (prep_task := _cache(prep(config=config), "prep")).outputs["data"]
            decide = features_needed(config=config).set_caching_options(False)
            with dsl.If(decide.output == True, name="offline-features"):  # noqa: E712 - kfp condition
                # extraction fans out over extract_gpus shards (one GPU each, one shared store)
                shards = extract_shards(num_shards=p["extract_gpus"]).set_caching_options(False)
                with dsl.ParallelFor(shards.output, name="extract-shards") as shard:
                    extract_task = _cache(extract(config=config, data=data, shard_index=shard,
                                                  num_shards=p["extract_gpus"]), "extract")
                merged = merge_extract_shards(feature_ids=dsl.Collected(extract_task.outputs["Output"]))
                merged.set_caching_options(False)
            with dsl.Else(name="no-offline-features"):
                skip_task = no_features().set_caching_options(False)
            feature_id = dsl.OneOf(merged.output, skip_task.output)
            if local:  # one machine: no cluster to launch a multi-node TrainJob on
                multinode_task = None
                train_task = _cache(train(config=config, data=data, feature_id=feature_id), "train")
                model = train_task.outputs["model"]
            else:
                with dsl.If(p["num_nodes"] > 1, name="multi-node"):
                    multinode_task = _cache(
                        train_multinode(
                            config=config, data=data, feature_id=feature_id, num_nodes=p["num_nodes"],
                            num_gpus=p["num_gpus"],
                            accelerator_type=p["accelerator_type"], node_selector=p["gpu_node_selector"],
                            tolerations=p["gpu_tolerations"], timeout_s=p["train_timeout_s"],
                        ),
                        "train",
                    )
                with dsl.Else(name="single-node"):
                    train_task = _cache(train(config=config, data=data, feature_id=feature_id), "train")
                model = dsl.OneOf(multinode_task.outputs["model"], train_task.outputs["model"])
            with dsl.If(p["run_eval"] == True, name="evaluate"):  # noqa: E712 - kfp condition
                if local:  # kfp.local runs ParallelFor iterations two at a time, separate tasks one by one
                    with dsl.ParallelFor(list(ALL_TASKS), parallelism=2, name="benchmarks") as task_name:
                        eval_task = _cache(evaluate(config=config, task=task_name, data=data, model=model,
                                                    feature_id=feature_id), "evaluate")
                    task_metrics = dsl.Collected(eval_task.outputs["Output"])
                else:  # one node per benchmark, named by it in the run graph
                    eval_tasks = [
                        _cache(evaluate(config=config, task=name, data=data, model=model, feature_id=feature_id)
                               .set_display_name(f"evaluate {name}"), "evaluate")
                        for name in ALL_TASKS
                    ]
                    task_metrics = [t.outputs["Output"] for t in eval_tasks]
                report_task = _cache(report(config=config, model=model, task_metrics=task_metrics), "report")
        if local:
            return
        gpu = dict(accelerator_type=p["accelerator_type"], node_selector=p["gpu_node_selector"],
                   tolerations=p["gpu_tolerations"])
        for task, step in ((exit_task, "finalize"), (setup, "setup"), (prep_task, "prep"), (decide, "decide"),
                           (skip_task, "skip"), (report_task, "report"), (multinode_task, "launcher"),
                           (shards, "skip"), (merged, "skip")):
            apply_cpu_step(task, step, placement)
        for task, step, count in ((extract_task, "extract", 1), (train_task, "train", p["num_gpus"]),
                                  *((t, "evaluate", p["eval_gpus"]) for t in eval_tasks)):
            if placement.gpu:
                apply_gpu_step(task, step, placement, num_gpus=count, **gpu)
            else:
                apply_cpu_step(task, step, placement)

    signature = pipeline_signature(preset, overrides, passed if local else None)
    return dsl.pipeline(name=PIPELINE_NAME, description=__doc__.splitlines()[0])(_with_signature(body, signature))


__all__ = ["PIPELINE_NAME", "STEPS", "SETTINGS", "build_pipeline", "pipeline_signature"]
