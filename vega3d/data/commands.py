"""``vega3d data synth|prep|check``: synthesise, prepare and check a local ScanNet-layout data root."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vega3d.cli_options import PresetOption, SetOption, config_from_options
from vega3d.problem_report import ReportFormat, render_problems

if TYPE_CHECKING:
    from vega3d.config import SyntheticConfig

app = typer.Typer(help="Synthesise, prepare and check a ScanNet-layout data root.", no_args_is_help=True)

FormatOption = Annotated[
    ReportFormat,
    typer.Option("--format", help="Problem report: auto (a table on a terminal, one line per problem elsewhere), "
                 "table, text or json."),
]
RootOption = Annotated[Path | None, typer.Option("--root", help="Data root folder (default: the preset's data.root).")]


def synthesize_root(root: Path, cfg: SyntheticConfig) -> int:
    """Write the synthetic scenes and their raw benchmark files; returns the number of scenes."""
    from vega3d.testing.synthetic import synthesize_scenes
    from vega3d.testing.synthetic_benchmarks import write_benchmarks

    truths = synthesize_scenes(root, cfg)
    write_benchmarks(root, truths, cfg.seed)
    return len(truths)


@app.command()
def synth(
    root: RootOption = None,
    preset: PresetOption = "tiny",
    num_train: Annotated[int | None, typer.Option(help="Train scenes.")] = None,
    num_val: Annotated[int | None, typer.Option(help="Val scenes.")] = None,
    num_test: Annotated[int | None, typer.Option(help="Test scenes (SQA3D test split).")] = None,
    frames: Annotated[int | None, typer.Option(help="Frames per scene in posed_images (every 10th sensor frame).")] = None,
    width: Annotated[int | None, typer.Option(help="RGB-D frame width in pixels.")] = None,
    height: Annotated[int | None, typer.Option(help="RGB-D frame height in pixels.")] = None,
    min_objects: Annotated[int | None, typer.Option(help="Fewest objects per scene.")] = None,
    max_objects: Annotated[int | None, typer.Option(help="Most objects per scene.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of scenes and benchmark language.")] = None,
) -> None:
    """Write deterministic synthetic ScanNet scenes and the raw files of the five benchmarks."""
    from pydantic import ValidationError

    from vega3d.config import SyntheticConfig, format_validation_error

    cfg = config_from_options(preset, None)
    given = {"num_train": num_train, "num_val": num_val, "num_test": num_test, "frames": frames, "width": width,
             "height": height, "min_objects": min_objects, "max_objects": max_objects, "seed": seed}
    try:
        synthetic = SyntheticConfig.model_validate(
            {**cfg.data.synthetic.model_dump(), **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as error:
        raise typer.BadParameter(format_validation_error(error)) from None
    target = root or Path(cfg.data.root)
    count = synthesize_root(target, synthetic)
    typer.echo(f"wrote {count} synthetic scenes and the benchmark files under {target}")


@app.command()
def check(root: RootOption = None, preset: PresetOption = "tiny", fmt: FormatOption = ReportFormat.auto) -> None:
    """Validate a data root; prints every problem with its fix and exits 1 when there is any."""
    from vega3d.data.check import check_data_root

    target = root or Path(config_from_options(preset, None).data.root)
    problems = check_data_root(target, progress=True)
    if problems:
        render_problems(problems, fmt)
        raise typer.Exit(1)
    typer.echo(f"{target}: no problems")


@app.command()
def prep(
    root: RootOption = None, preset: PresetOption = "tiny", set_: SetOption = None, fmt: FormatOption = ReportFormat.auto
) -> None:
    """Check, then produce boxes, voxel sets, frame selections and processed records of every task."""
    from vega3d.data.prep import PrepError, run_prep

    cfg = config_from_options(preset, set_)
    target = root or Path(cfg.data.root)
    try:
        report = run_prep(target, cfg.data)
    except PrepError as error:
        render_problems(error.problems, fmt)
        typer.echo(f"prep refused {target}: fix the problems above; nothing was written", err=True)
        raise typer.Exit(1) from None
    for name, count in sorted(report.records.items()):
        typer.echo(f"{name}: {count} records")
    typer.echo(f"prepared {sum(len(s) for s in report.scenes.values())} scenes under {target} "
               f"in {report.seconds:.1f} s")
