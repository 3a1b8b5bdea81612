"""``vega3d extract``: precompute generative features into the offline feature store."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from vega3d.cli.options import DataRootOption, PresetOption, SetOption, config_from_options, hidden_alias

logger = logging.getLogger(__name__)


def extract_command(
    preset: PresetOption = "tiny",
    overrides: SetOption = None,
    data_root: DataRootOption = None,
    output: Annotated[
        str | None, typer.Option("--output", help="Feature store URI (local path or s3://); default generative.feature_root or <data.root>/features.")
    ] = None,
    store: Annotated[str | None, hidden_alias("--store", "--output")] = None,
    split: Annotated[
        list[str] | None, typer.Option("--split", help="Scene split to extract (repeat); default train, val and test.")
    ] = None,
    sampling: Annotated[
        list[str] | None,
        typer.Option("--sampling", help="Frame sampling strategy (repeat): uniform, max-coverage, mc-ratio95; default data.sampling."),
    ] = None,
    shard_index: Annotated[int, typer.Option("--shard-index", help="This process's shard (0-based).")] = 0,
    num_shards: Annotated[int, typer.Option("--num-shards", help="Total shards across processes/machines.")] = 1,
    workers: Annotated[int, typer.Option("--workers", help="Processes to launch on this machine, each a sub-shard.")] = 1,
    device: Annotated[str, typer.Option("--device", help="Torch device: auto (cuda if available), cpu, cuda:1...")] = "auto",
    validate: Annotated[
        bool, typer.Option("--validate", help="Only check an existing feature set (generative.feature_id) against its manifest.")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show the tqdm progress bar.")] = True,
) -> None:
    """Extract the generative features of every sampled frame list of every scene (existing keys are skipped)."""
    cfg = config_from_options(preset, overrides, data_root).with_paths_under_root()
    from vega3d.generative.extract import default_store_uri

    uri = output or store or default_store_uri(cfg)
    if validate:
        from vega3d.generative.store import FeatureStore, validate_feature_set

        if not cfg.generative.feature_id:
            raise typer.BadParameter("--validate needs --set generative.feature_id=<id>")
        count = validate_feature_set(FeatureStore(uri), cfg.generative.feature_id)
        typer.echo(json.dumps({"feature_id": cfg.generative.feature_id, "uri": uri, "files": count}))
        return
    if workers > 1:
        from vega3d.generative.extract import run_workers

        base = ["--preset", preset, "--output", uri, "--device", device, "--no-progress" if not progress else "--progress"]
        for flag, values in (("--set", overrides), ("--data-root", [data_root] if data_root else []), ("--split", split),
                             ("--sampling", sampling)):
            for value in values or []:
                base += [flag, value]
        run_workers(base, workers, shard_index, num_shards)
        return
    from transformers.utils import logging as hf_logging

    from vega3d.generative.extract import run_extract

    hf_logging.disable_progress_bar()  # our own tqdm bar reports progress; keep stdout for the JSON summary

    summary = run_extract(cfg, uri, device, splits=split or ("train", "val", "test"), strategies=sampling,
                          shard_index=shard_index, num_shards=num_shards, progress=progress)
    typer.echo(json.dumps({"feature_id": summary.feature_id, "uri": uri, **summary.counts,
                           "seconds": round(summary.seconds, 3)}))
