"""Single-node DeepSpeed training step."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def train(config: str, data: Input[Dataset], feature_id: str, model: Output[Model], summary: Output[Metrics]) -> str:
    """Train VEGA-3D with DeepSpeed on this node (torchrun over the node's GPUs, or gloo on CPU).

    Checkpoints go to the run's storage location every ``train.save_steps`` steps and a rerun resumes from
    the latest complete one. Loss, learning rate and throughput stream to the MLflow child run ``train``.
    Returns the URI of the final model (also in the Model metadata).

    Args:
        config: Resolved run config (YAML) from setup_run.
        data: The prepared data set from prep.
        feature_id: Offline feature id from extract, or empty for online / no generative features.
        model: The trained model (metadata ``uri``).
        summary: Final training loss and throughput.
    """
    from vega3d import stages

    result = stages.train(config, data.metadata["uri"], feature_id)
    model.metadata.update({"uri": result["uri"]})
    for name, value in result["metrics"].items():
        summary.log_metric(name, float(value))
    stages.write_artifact_file(model.path, dict(model.metadata))
    stages.write_artifact_file(summary.path, result["metrics"])
    return result["uri"]
