"""Offline generative feature extraction step."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.images import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def extract(config: str, data: Input[Dataset], features: Output[Dataset], summary: Output[Metrics]) -> str:
    """Run the frozen generative encoder over every sampled frame list and store the features.

    Features are written once per content key (encoder, weights, timestep, block, resolution, grid, frames,
    seed) under the storage root; existing keys are skipped, so reruns only fill what is missing. Returns
    the feature id that training and evaluation read by.

    Args:
        config: Resolved run config (YAML) from setup_run.
        data: The prepared data set from prep.
        features: The feature store location (metadata ``uri`` and ``feature_id``).
        summary: Feature sets written and skipped.
    """
    from vega3d import stages

    result = stages.extract(config, data.metadata["uri"])
    features.metadata.update({"uri": result["uri"], "feature_id": result["feature_id"]})
    for name, value in result["counts"].items():
        summary.log_metric(name, float(value))
    stages.write_artifact_file(features.path, dict(features.metadata))
    stages.write_artifact_file(summary.path, result["counts"])
    return result["feature_id"]
