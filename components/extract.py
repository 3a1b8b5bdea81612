"""Offline generative feature extraction step."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.images import CPU_IMAGE, CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def extract(
    config: str, data: Input[Dataset], features: Output[Dataset], summary: Output[Metrics],
    shard_index: int = 0, num_shards: int = 1,  # one shard of a fan-out over GPUs
) -> str:
    """Run the frozen generative encoder over every sampled frame list and store the features.

    Features are written once per content key (encoder, weights, timestep, block, resolution, grid, frames,
    seed) under the storage root; existing keys are skipped, so reruns only fill what is missing. Returns
    the feature id that training and evaluation read by.

    Args:
        config: Resolved run config (YAML) from setup_run.
        data: The prepared data set from prep.
        features: The feature store location (metadata ``uri`` and ``feature_id``).
        summary: Feature sets written and skipped.
        shard_index: This step's shard (scenes i with i mod num_shards == shard_index).
        num_shards: Shards the extraction is fanned out over (one GPU each, one shared store).
    """
    from vega3d import stages

    result = stages.extract(config, data.metadata["uri"], shard_index, num_shards)
    features.metadata.update({"uri": result["uri"], "feature_id": result["feature_id"]})
    for name, value in result["counts"].items():
        summary.log_metric(name, float(value))
    stages.write_artifact_file(features.path, dict(features.metadata))
    stages.write_artifact_file(summary.path, result["counts"])
    return result["feature_id"]


# The fan-out of the extract step over GPUs (items of the ParallelFor, then the shards' one feature id)
@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def extract_shards(num_shards: int) -> list:
    """The shard indices [0, ..., num_shards - 1] of the extract fan-out."""
    from vega3d.generative.extract import shard_indices

    return shard_indices(num_shards)


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def merge_extract_shards(feature_ids: list) -> str:
    """The feature id every extract shard wrote (fails when the shards disagree)."""
    from vega3d.generative.extract import merge_feature_ids

    return merge_feature_ids(feature_ids)
