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
    """The config of ``--preset`` and ``--set``; an invalid one raises ``ConfigError`` naming the field, which
    the command line shows as two lines with exit code 2 (``vega3d.errors``)."""
    from vega3d.config import load_config

    return load_config(preset, overrides or [])
