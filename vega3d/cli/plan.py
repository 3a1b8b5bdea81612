"""``vega3d plan``: the per-GPU memory plan of a preset on a cluster shape (``vega3d.plan``)."""

from __future__ import annotations

from typing import Annotated

import typer

from vega3d.cli.options import PresetOption, SetOption, config_from_options
from vega3d.plan import TEXT_TOKENS


def plan_command(
    preset: PresetOption = "paper",
    overrides: SetOption = None,
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="GPUs per node.")] = 8,
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Nodes.")] = 1,
    gpu_memory: Annotated[float, typer.Option("--gpu-memory", min=1, help="Memory of one GPU in GiB.")] = 80.0,
    text_tokens: Annotated[int, typer.Option("--text-tokens", min=0,
                                             help="Text tokens of a sample on top of its visual tokens.")] = TEXT_TOKENS,
) -> None:
    """Per-GPU memory of weights, gradients, optimizer states and activations under ZeRO-2, ZeRO-3 and ZeRO-3 +
    offload, with and without gradient checkpointing, the global batch, and the first setting that fits."""
    from vega3d.plan import Cluster, plan_for, plan_table

    cfg = config_from_options(preset, overrides)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"nproc": gpus})})
    typer.echo(plan_table(plan_for(cfg, Cluster(gpus, nodes, gpu_memory), text_tokens=text_tokens)))
