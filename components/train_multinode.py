"""Multi-node training step: a launcher for a Kubeflow Trainer TrainJob."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from components.images import CPU_IMAGE, CUDA_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def train_multinode(
    config: str,
    data: Input[Dataset],
    feature_id: str,
    num_nodes: int,
    num_gpus: int,
    accelerator_type: str,
    node_selector: dict,
    tolerations: list,
    timeout_s: int,
    model: Output[Model],
    trainjob: Output[Artifact],
    image: str = CUDA_IMAGE,
) -> str:
    """Train VEGA-3D on several GPU nodes through a Kubeflow Trainer TrainJob (torchrun + DeepSpeed).

    Creates the TrainJob with this step's GPU count, accelerator, node selector and tolerations per node,
    streams node 0's logs, fails unless the job completes (Failed, timeout or deletion fail the step) and
    deletes the job on exit. The TrainJob manifest is kept as an artifact. Returns the final model URI.

    Args:
        config: Resolved run config (YAML) from setup_run.
        data: The prepared data set from prep.
        feature_id: Offline feature id from extract, or empty.
        num_nodes: Nodes of the TrainJob.
        num_gpus: GPUs (torchrun processes) per node.
        accelerator_type: Kubernetes GPU resource name.
        node_selector: Node selector of the GPU node pool.
        tolerations: Tolerations of the GPU node pool.
        timeout_s: Seconds before the TrainJob is given up (and deleted).
        model: The trained model (metadata ``uri``).
        trainjob: The TrainJob manifest that ran (YAML).
        image: Image of the training nodes.
    """
    from vega3d import stages

    result = stages.train_multinode(
        config, data.metadata["uri"], feature_id, num_nodes, num_gpus, accelerator_type, node_selector,
        tolerations, image, trainjob.path, timeout_s,
    )
    model.metadata.update({"uri": result["uri"], "trainjob": result["trainjob"]})
    stages.write_artifact_file(model.path, dict(model.metadata))
    return result["uri"]
