"""One benchmark evaluation step."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import CUDA_IMAGE


@dsl.component(base_image=CUDA_IMAGE, install_kfp_package=False)
def evaluate(
    config: str, task: str, data: Input[Dataset], model: Input[Model], feature_id: str, metrics: Output[Metrics]
) -> str:
    """Evaluate the model on one benchmark (scanrefer, multi3drefer, scan2cap, scanqa or sqa3d).

    Inference is batched and resumable (a rerun skips finished ids); predictions and metrics.json land in
    the run's storage location and the metrics in the MLflow child run ``eval-<task>``. Returns the
    metrics as JSON.

    Args:
        config: Resolved run config (YAML) from setup_run.
        task: Benchmark name.
        data: The prepared data set from prep.
        model: The trained model from train.
        feature_id: Offline feature id, or empty for online / no generative features.
        metrics: The benchmark's metrics, shown in the Kubeflow UI.
    """
    import json

    from vega3d import stages

    result = stages.evaluate(config, task, data.metadata["uri"], model.metadata["uri"], feature_id)
    for name, value in result.items():
        if name != "task":
            metrics.log_metric(name, float(value))
    stages.write_artifact_file(metrics.path, result)
    return json.dumps(result, sort_keys=True)
