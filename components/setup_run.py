"""Resolve the run configuration and open the MLflow parent run."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def setup_run(
    preset: str,
    backbone: str,
    fusion: str,
    sampling: str,
    frames: int,
    timestep: int,
    block: int,
    lr: float,
    vision_lr: float,
    epochs: float,
    max_steps: int,
    num_gpus: int,
    overrides: list,
    storage_root: str,
    data_uri: str,
    mlflow_uri: str,
    experiment: str,
    run_id: str,
    job_id: str,
    config_file: Output[Artifact],
    memory_plan: Output[Markdown],  # issue 19: the memory warning, shown in the UI
    num_nodes: int = 1,
    gpu_memory_gib: float = 80.0,
) -> NamedTuple("SetupOutputs", [("config", str), ("parent_run_id", str)]):
    """Resolve the preset and parameters into one validated VEGA-3D config and open the MLflow parent run.

    Fails fast with the name of every invalid field. The resolved config (YAML) is the input of every later
    step, so identical settings hit the cache and write to the same storage location.

    Args:
        preset: Preset name (tiny, paper, wan_t2v, wan_vace, sd21, baseline).
        backbone: Generative backbone id (empty: the preset's).
        fusion: Fusion method (empty: the preset's).
        sampling: Frame sampling: uniform, max-coverage or mc-ratio95 (empty: the preset's).
        frames: Frames per sample (-1: the preset's).
        timestep: Diffusion timestep of the generative features (-1: the preset's).
        block: Tapped DiT block (-1: the preset's).
        lr: Learning rate (-1: the preset's).
        vision_lr: Vision tower learning rate (-1: the preset's).
        epochs: Training epochs (-1: the preset's).
        max_steps: Cap on optimiser steps (-1: the preset's).
        num_gpus: GPUs (processes) per training node.
        overrides: Dotted ``section.field=value`` overrides applied after the pipeline parameters.
        storage_root: Where data, features, checkpoints and predictions live (s3://bucket/prefix or a path).
        data_uri: Data root in the ScanNet layout of SPEC.md section 5.
        mlflow_uri: MLflow tracking URI; empty disables tracking.
        experiment: MLflow experiment name.
        run_id: Key of this pipeline run in MLflow (empty: the Kubeflow run id).
        job_id: The Kubeflow run id (filled in by the pipeline).
        config_file: The resolved config, for the UI.
        memory_plan: Markdown for the UI: a warning with the per-GPU memory plan when the setting will not fit.
        num_nodes: Training nodes (for the memory plan).
        gpu_memory_gib: Memory of one GPU in GiB (for the memory plan).
    """
    from collections import namedtuple

    from vega3d import stages
    from vega3d.runs import pipeline_overrides

    dotted = pipeline_overrides(
        backbone, fusion, sampling, frames, timestep, block, lr, vision_lr, epochs, max_steps, num_gpus,
        extra=list(overrides),
    )
    config_yaml, parent_run_id = stages.setup_run(
        preset, dotted, storage_root, data_uri, mlflow_uri, experiment, run_id or job_id
    )
    with open(config_file.path, "w") as handle:
        handle.write(config_yaml)  # setup_run is never cached: the file is for the UI
    from vega3d.plan import run_memory_markdown  # issue 19: warn before launch when the setting will not fit

    with open(memory_plan.path, "w") as handle:
        handle.write(run_memory_markdown(config_yaml, num_gpus, num_nodes, gpu_memory_gib))
    return namedtuple("SetupOutputs", ["config", "parent_run_id"])(config_yaml, parent_run_id)
