"""Options every ``vega3d`` command shares: the preset and ``--set`` overrides, and loading them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from vega3d.config import Vega3DConfig

PresetOption = Annotated[
    str, typer.Option("--preset", help="Config preset name (tiny, paper, wan_t2v, ...) or a YAML file (path or s3://).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Config override section.field=value (repeat), e.g. train.max_steps=20."),
]


def config_from_options(preset: str, overrides: list[str] | None) -> Vega3DConfig:
    """The config of ``--preset`` and ``--set``; an invalid one is a usage error naming the field (exit 2)."""
    from vega3d.config import ConfigError, load_config

    try:
        return load_config(preset, overrides or [])
    except ConfigError as error:
        raise typer.BadParameter(str(error)) from None
