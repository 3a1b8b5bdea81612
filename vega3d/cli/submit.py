"""``vega3d pipeline submit``: compiled pipeline -> Kubeflow Pipelines run (kfp and mlflow imported lazily).

Registered on the pipeline group in ``vega3d.cli.pipeline``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from vega3d.cli.options import parse_params


def submit_command(
    package: Annotated[Path, typer.Argument(help="Compiled pipeline YAML (from `vega3d pipeline compile`).")],
    host: Annotated[
        str | None, typer.Option(envvar="KFP_HOST", help="Kubeflow Pipelines URL; empty inside the cluster.")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="KFP_TOKEN", help="Bearer token for the endpoint (or in-cluster SA token).")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Kubeflow profile namespace of the run (multi-user installs).")
    ] = None,
    experiment: Annotated[str, typer.Option(help="Experiment to file the run under (created if missing).")] = "vega3d",
    run_name: Annotated[str | None, typer.Option(help="Run name; default vega3d-<UTC timestamp>.")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Pipeline parameter name=value (repeat).")
    ] = None,
    service_account: Annotated[
        str | None, typer.Option(help="Service account the steps run as (default: the endpoint's).")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait for the run to finish; fail unless it succeeds.")] = False,
    timeout: Annotated[int, typer.Option(help="Seconds to wait with --wait.")] = 72 * 3600,
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="With --wait: read the champion gate here."),
    ] = None,
    mlflow_uri: Annotated[str | None, typer.Option("--mlflow-uri", hidden=True, help="Old spelling of --tracking-uri.")] = None,
    model_name: Annotated[str, typer.Option(help="Registered model the report step gates.")] = "vega3d",
    gate_json: Annotated[
        Path | None, typer.Option(help="With --wait and --tracking-uri: write the gate result here as JSON.")
    ] = None,
) -> None:
    """Submit the compiled pipeline to Kubeflow Pipelines and print the run's URL."""
    from vega3d.cluster import submit

    client = submit.make_client(host, token, namespace)
    name = run_name or time.strftime("vega3d-%Y%m%d-%H%M%S", time.gmtime())
    run = submit.submit_pipeline(client, package, parse_params(param or []), experiment=experiment, run_name=name,
                                 host=host, namespace=namespace, service_account=service_account)
    typer.echo(run.url)
    if not wait:
        return
    try:
        submit.wait_for_run(client, run.run_id, timeout)
    except submit.SubmitError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"run {run.run_id} succeeded")
    tracking_uri = tracking_uri or mlflow_uri
    if tracking_uri:
        from mlflow import MlflowClient

        gate = submit.gate_result(MlflowClient(tracking_uri=tracking_uri), model_name, run.run_id)
        gate["run_id"], gate["url"] = run.run_id, run.url
        typer.echo(json.dumps(gate, sort_keys=True))
        if gate_json:
            from vega3d.storage import write_json

            write_json(str(gate_json), gate, indent=2)
