"""The VEGA-3D pipeline: setup -> prep -> extract (offline features only) -> train -> 5 evaluations -> report.

An ExitHandler closes the MLflow parent run (FAILED when any step failed). Caching is off by default and
opted into per step with ``cached_steps`` at compile time. GPU placement (accelerator, node selector,
tolerations, /dev/shm, secrets) is applied by ``pipelines.placement`` to the GPU steps only.
"""


from collections.abc import Iterable

from kfp import dsl

from components.evaluate import evaluate
from components.extract import extract, extract_shards, merge_extract_shards
from components.finalize import finalize
from components.images import CPU_IMAGE
from components.prep import prep
from components.report import report
from components.setup_run import setup_run
from components.train import train
from components.train_multinode import train_multinode
from pipelines.placement import (
    DEFAULT_NODE_SELECTOR,
    DEFAULT_TOLERATIONS,
    Placement,
    apply_cpu_step,
    apply_gpu_step,
)

PIPELINE_NAME = "vega3d"
STEPS = ("prep", "extract", "train", "evaluate", "report")
TASKS = ["scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d"]


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def features_needed(config: str) -> bool:
    """Whether the run reads offline generative features (so the extract step must run)."""
    from vega3d import stages

    return stages.needs_offline_features(config)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def no_features() -> str:
    """Feature id of runs without offline features (online encoder or no generative branch)."""
    return ""


def build_pipeline(cached_steps: Iterable[str] = (), placement: Placement | None = None, local: bool = False):
    """Return the pipeline function; ``cached_steps`` names the steps that may come from the cache.

    ``local=True`` builds the same DAG for kfp.local minus what only a cluster has: the cluster placement
    (kfp.local ignores it, and cannot resolve runtime accelerator parameters inside nested groups) and the
    multi-node TrainJob branch (kfp.local cannot select between two artifacts with OneOf).
    """
    placement = placement or Placement()
    cached = set(cached_steps)
    unknown = cached - set(STEPS)
    if unknown:
        raise ValueError(f"unknown steps to cache {sorted(unknown)}; choose from {list(STEPS)}")

    def _cache(task, step: str):
        task.set_caching_options(step in cached)
        return task

    @dsl.pipeline(name=PIPELINE_NAME, description=__doc__.splitlines()[0])
    def vega3d_pipeline(
        preset: str = "tiny",
        backbone: str = "",
        fusion: str = "",
        sampling: str = "",
        frames: int = -1,
        timestep: int = -1,
        block: int = -1,
        lr: float = -1.0,
        vision_lr: float = -1.0,
        epochs: float = -1.0,
        max_steps: int = -1,
        num_gpus: int = 1,
        num_nodes: int = 1,
        gpu_memory_gib: float = 80.0,  # issue 19: memory of one GPU, for setup_run's memory plan
        extract_gpus: int = 1,  # issue 19: extract shards, one GPU each
        train_timeout_s: int = 72 * 3600,
        eval_gpus: int = 1,
        accelerator_type: str = "nvidia.com/gpu",
        gpu_node_selector: dict = DEFAULT_NODE_SELECTOR,
        gpu_tolerations: list = DEFAULT_TOLERATIONS,
        overrides: list = [],  # noqa: B006 - kfp pipeline parameters take literal defaults
        storage_root: str = "s3://vega3d",
        data_uri: str = "s3://vega3d/data",
        mlflow_uri: str = "",
        experiment: str = "vega3d",
        run_id: str = "",
        run_eval: bool = True,
    ):
        exit_task = finalize(
            mlflow_uri=mlflow_uri, experiment=experiment, run_id=run_id, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER
        )
        exit_task.set_caching_options(False)
        with dsl.ExitHandler(exit_task, name="vega3d-run"):
            setup = setup_run(
                preset=preset,
                backbone=backbone,
                fusion=fusion,
                sampling=sampling,
                frames=frames,
                timestep=timestep,
                block=block,
                lr=lr,
                vision_lr=vision_lr,
                epochs=epochs,
                max_steps=max_steps,
                num_gpus=num_gpus,
                overrides=overrides,
                storage_root=storage_root,
                data_uri=data_uri,
                mlflow_uri=mlflow_uri,
                experiment=experiment,
                run_id=run_id,
                job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                num_nodes=num_nodes, gpu_memory_gib=gpu_memory_gib,  # issue 19: the memory plan
            ).set_caching_options(False)
            config = setup.outputs["config"]
            prep_task = _cache(prep(config=config), "prep")
            decide = features_needed(config=config).set_caching_options(False)
            with dsl.If(decide.output == True, name="offline-features"):  # noqa: E712 - kfp condition
                # issue 19: extraction fans out over extract_gpus shards (one GPU each, one shared store)
                shards = extract_shards(num_shards=extract_gpus).set_caching_options(False)
                with dsl.ParallelFor(shards.output, name="extract-shards") as shard:
                    extract_task = _cache(extract(config=config, data=prep_task.outputs["data"], shard_index=shard,
                                                  num_shards=extract_gpus), "extract")
                merged = merge_extract_shards(feature_ids=dsl.Collected(extract_task.outputs["Output"]))
                merged.set_caching_options(False)
            with dsl.Else(name="no-offline-features"):
                skip_task = no_features().set_caching_options(False)
            feature_id = dsl.OneOf(merged.output, skip_task.output)
            if local:  # one machine: no cluster to launch a multi-node TrainJob on
                multinode_task = None
                train_task = _cache(
                    train(config=config, data=prep_task.outputs["data"], feature_id=feature_id), "train"
                )
                model = train_task.outputs["model"]
            else:
                with dsl.If(num_nodes > 1, name="multi-node"):
                    multinode_task = _cache(
                        train_multinode(
                            config=config, data=prep_task.outputs["data"], feature_id=feature_id,
                            num_nodes=num_nodes, gpus_per_node=num_gpus, accelerator_type=accelerator_type,
                            node_selector=gpu_node_selector, tolerations=gpu_tolerations,
                            timeout_s=train_timeout_s,
                        ),
                        "train",
                    )
                with dsl.Else(name="single-node"):
                    train_task = _cache(
                        train(config=config, data=prep_task.outputs["data"], feature_id=feature_id), "train"
                    )
                model = dsl.OneOf(multinode_task.outputs["model"], train_task.outputs["model"])
            with dsl.If(run_eval == True, name="evaluate"):  # noqa: E712 - kfp condition
                with dsl.ParallelFor(TASKS, parallelism=2, name="benchmarks") as task_name:
                    eval_task = _cache(
                        evaluate(
                            config=config,
                            task=task_name,
                            data=prep_task.outputs["data"],
                            model=model,
                            feature_id=feature_id,
                        ),
                        "evaluate",
                    )
                report_task = _cache(
                    report(
                        config=config,
                        model=model,
                        task_metrics=dsl.Collected(eval_task.outputs["Output"]),
                    ),
                    "report",
                )
        if local:
            return
        gpu = dict(accelerator_type=accelerator_type, node_selector=gpu_node_selector, tolerations=gpu_tolerations)
        for task, step in ((exit_task, "finalize"), (setup, "setup"), (prep_task, "prep"), (decide, "decide"),
                           (skip_task, "skip"), (report_task, "report"), (multinode_task, "launcher"),
                           (shards, "skip"), (merged, "skip")):  # issue 19: the fan-out's small steps
            apply_cpu_step(task, step, placement)
        apply_gpu_step(extract_task, "extract", placement, num_gpus=1, **gpu)
        apply_gpu_step(train_task, "train", placement, num_gpus=num_gpus, **gpu)
        apply_gpu_step(eval_task, "evaluate", placement, num_gpus=eval_gpus, **gpu)

    return vega3d_pipeline
