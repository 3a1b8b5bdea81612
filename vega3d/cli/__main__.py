"""``python -m vega3d.cli``: the ``vega3d`` command (extract workers start themselves this way)."""

from vega3d.cli import main

main()
