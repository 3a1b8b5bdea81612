"""Report and model-registration step."""

from kfp import dsl
from kfp.dsl import HTML, Input, Markdown, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def report(
    config: str, model: Input[Model], task_metrics: list, table: Output[Markdown], viewer: Output[HTML]
) -> str:
    """Tabulate the five benchmarks beside the paper's rows, register the model and gate the champion.

    Logs the table, a plot, the 3D viewer of every record, the training curves and the metrics to the MLflow
    parent run, registers the model version by URI with alias ``candidate``, and moves ``champion`` to it
    only if it beats the current champion on the configured metrics. Returns the gate result as JSON (``promoted``, ``version``, compared metrics).

    Args:
        config: Resolved run config (YAML) from setup_run.
        model: The trained model from train.
        task_metrics: JSON metrics of each evaluation (collected from the parallel evaluations).
        table: The benchmark table and the records summary (Markdown) shown in the Kubeflow UI.
        viewer: The 3D viewer of every evaluated record (self-contained HTML), shown in the Kubeflow UI.
    """
    import json

    from vega3d import stages, storage

    result = stages.report(config, model.metadata["uri"], [json.loads(m) for m in task_metrics])
    with open(table.path, "w") as handle:
        handle.write(result["markdown"])
    with open(viewer.path, "wb") as handle:  # the viewer written beside report.md
        handle.write(storage.read_bytes(result["viewer_uri"]))
    return json.dumps(result["gate"], sort_keys=True)
