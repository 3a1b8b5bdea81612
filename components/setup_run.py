"""Resolve the run configuration and open the MLflow parent run."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Markdown, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def setup_run(
    preset: str,
    settings: dict,
    overrides: list,
    storage_root: str,
    data_uri: str,
    mlflow_uri: str,
    experiment: str,
    run_name: str,
    job_id: str,
    config_file: Output[Artifact],
    memory_plan: Output[Markdown],  # the memory warning, shown in the UI
    num_nodes: int = 1,
    gpu_memory_gib: float = 80.0,
) -> NamedTuple("SetupOutputs", [("config", str), ("parent_run_id", str)]):
    """Resolve the preset and settings into one validated VEGA-3D config and open the MLflow parent run.

    The only place the config is validated: fails fast with the name of every invalid field. The resolved
    config (YAML) is the input of every later step, so identical settings hit the cache and write to the same
    storage location.

    Args:
        preset: Preset name or YAML file URI.
        settings: The pipeline's settings by name (``vega3d.params.SETTINGS``); empty ones keep the preset's.
        overrides: Dotted ``section.field=value`` overrides applied after the settings.
        storage_root: Where features, checkpoints and predictions live (s3://bucket/prefix or a path).
        data_uri: Data root in the ScanNet layout of SPEC.md section 5.
        mlflow_uri: MLflow tracking URI; empty disables tracking.
        experiment: MLflow experiment name.
        run_name: Name of the MLflow parent run (empty: the Kubeflow run id, which is always its key).
        job_id: The Kubeflow run id (filled in by the pipeline).
        config_file: The resolved config, for the UI.
        memory_plan: Markdown for the UI: a warning with the per-GPU memory plan when the setting will not fit.
        num_nodes: Training nodes (for the memory plan).
        gpu_memory_gib: Memory of one GPU in GiB (for the memory plan).
    """
    from collections import namedtuple

    from vega3d import stages
    from vega3d.params import to_overrides

    config_yaml, parent_run_id = stages.setup_run(
        preset, to_overrides(settings, overrides), storage_root, data_uri, mlflow_uri, experiment, run_name, job_id
    )
    with open(config_file.path, "w") as handle:
        handle.write(config_yaml)  # setup_run is never cached: the file is for the UI
    from vega3d.plan import run_memory_markdown  # warn before launch when the setting will not fit

    with open(memory_plan.path, "w") as handle:
        handle.write(run_memory_markdown(config_yaml, num_nodes, gpu_memory_gib))
    return namedtuple("SetupOutputs", ["config", "parent_run_id"])(config_yaml, parent_run_id)
