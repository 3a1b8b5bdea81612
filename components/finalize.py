"""Exit handler: the MLflow parent run's final status."""

from kfp import dsl

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def finalize(mlflow_uri: str, experiment: str, job_id: str, status: dsl.PipelineTaskFinalStatus):
    """Close the MLflow parent run: FINISHED when every step succeeded, FAILED otherwise.

    Runs as the pipeline's exit handler, so it also runs when a step fails.

    Args:
        mlflow_uri: MLflow tracking URI; empty disables tracking.
        experiment: MLflow experiment name.
        job_id: The Kubeflow run id (filled in by the pipeline).
        status: Final status of the steps inside the exit handler.
    """
    from vega3d import stages

    stages.finalize(mlflow_uri, experiment, job_id, status.state, status.error_message)
