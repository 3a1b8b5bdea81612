"""Data preparation step."""

from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def prep(config: str, data: Output[Dataset], summary: Output[Metrics]) -> str:
    """Check the data root and derive everything training and evaluation read.

    Runs ``vega3d data check`` first (a broken layout fails the step with a table of problems and fixes),
    then writes ground-truth and predicted boxes, voxel sets, frame selections and the processed records of
    the five tasks next to the raw data. Returns the data URI (also in the Dataset metadata).

    Args:
        config: Resolved run config (YAML) from setup_run.
        data: The prepared data set (metadata ``uri``).
        summary: Counts of scenes and records per task.
    """
    from vega3d import stages

    result = stages.prep(config)
    data.metadata.update({"uri": result["uri"], **result["counts"]})
    for name, value in result["counts"].items():
        summary.log_metric(name, float(value))
    stages.write_artifact_file(data.path, dict(data.metadata))
    stages.write_artifact_file(summary.path, result["counts"])
    return result["uri"]
