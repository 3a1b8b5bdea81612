"""``vega3d data synth|prep|check``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Synthesise, prepare and check a ScanNet-layout data root.", no_args_is_help=True)
