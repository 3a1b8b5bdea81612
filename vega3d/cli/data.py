"""``vega3d data synth|prep|check``: synthesise, prepare and check a local ScanNet-layout data root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vega3d.cli.options import PresetOption, SetOption, config_from_options, hidden_alias
from vega3d.errors import require_data_root
from vega3d.problem_report import ReportFormat, render_problems

app = typer.Typer(help="Synthesise, prepare and check a ScanNet-layout data root.", no_args_is_help=True)

RootOption = Annotated[
    Path | None, typer.Option("--data-root", help="Data root folder (default: the preset's data.root).")
]
OldRootOption = Annotated[Path | None, hidden_alias("--root", "--data-root")]
DeepOption = Annotated[bool, typer.Option("--deep", help="Decode every frame (parallel) instead of reading headers.")]
MaxInvalidOption = Annotated[float, typer.Option(
    "--max-invalid-frames", min=0.0, max=1.0,
    help="Share of a scene's frames that may be invalid (-inf/NaN pose, unreadable image) before it is refused.")]
FormatOption = Annotated[
    ReportFormat,
    typer.Option("--format", help="Problem report: auto (a table on a terminal, one line per problem elsewhere), "
                 "table, text or json."),
]


@app.command()
def synth(
    data_root: RootOption = None,
    preset: PresetOption = "tiny",
    set_: SetOption = None,
    num_train: Annotated[int | None, typer.Option(help="Train scenes.")] = None,
    num_val: Annotated[int | None, typer.Option(help="Val scenes.")] = None,
    num_test: Annotated[int | None, typer.Option(help="Test scenes (SQA3D test split).")] = None,
    frames: Annotated[int | None, typer.Option(help="Frames per scene in posed_images (every 10th sensor frame).")] = None,
    width: Annotated[int | None, typer.Option(help="RGB-D frame width in pixels.")] = None,
    height: Annotated[int | None, typer.Option(help="RGB-D frame height in pixels.")] = None,
    min_objects: Annotated[int | None, typer.Option(help="Fewest objects per scene.")] = None,
    max_objects: Annotated[int | None, typer.Option(help="Most objects per scene.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of scenes and benchmark language.")] = None,
    root: OldRootOption = None,
) -> None:
    """Write deterministic synthetic ScanNet scenes and the raw files of the five benchmarks."""
    from pydantic import ValidationError

    from vega3d.config import SyntheticConfig, format_validation_error

    cfg = config_from_options(preset, set_)
    given = {"num_train": num_train, "num_val": num_val, "num_test": num_test, "frames": frames, "width": width,
             "height": height, "min_objects": min_objects, "max_objects": max_objects, "seed": seed}
    try:
        synthetic = SyntheticConfig.model_validate(
            {**cfg.data.synthetic.model_dump(), **{k: v for k, v in given.items() if v is not None}})
    except ValidationError as error:
        raise typer.BadParameter(format_validation_error(error)) from None
    target = data_root or root or Path(cfg.data.root)
    from vega3d.testing.synthetic_benchmarks import synthesize_root

    count = synthesize_root(target, synthetic)
    typer.echo(f"wrote {count} synthetic scenes and the benchmark files under {target}")


@app.command()
def check(
    data_root: RootOption = None, preset: PresetOption = "tiny", set_: SetOption = None, deep: DeepOption = False,
    max_invalid_frames: MaxInvalidOption = 0.25, fmt: FormatOption = ReportFormat.auto, root: OldRootOption = None,
) -> None:
    """Validate a data root; prints every problem with its fix and exits 1 when there is any (2 when the
    location is no data root at all: missing, a file, or without scannet/ and benchmark/)."""
    from vega3d.data.check import check_data_root

    target = data_root or root or Path(config_from_options(preset, set_).data.root)
    require_data_root(str(target))  # not a data root at all: one user error (exit 2), not a problem report
    frame_lists: dict = {}
    problems = check_data_root(target, progress=True, deep=deep, max_invalid_ratio=max_invalid_frames,
                               frame_lists=frame_lists)
    excluded = sum(len(f.excluded) for f in frame_lists.values())
    typer.echo(f"{excluded} invalid frame(s) would be excluded; "
               + ("every frame was decoded" if deep else "image bodies were not decoded (use --deep)"),
               err=fmt == ReportFormat.json)  # stdout holds only the JSON report then
    if problems:
        render_problems(problems, fmt)
        raise typer.Exit(1)
    typer.echo(f"{target}: no problems")


@app.command()
def prep(
    data_root: RootOption = None, preset: PresetOption = "tiny", set_: SetOption = None,
    max_invalid_frames: MaxInvalidOption = 0.25, fmt: FormatOption = ReportFormat.auto, root: OldRootOption = None,
) -> None:
    """Check (every frame decoded), then produce boxes, voxel sets, frame selections and processed records."""
    from vega3d.data.prep import PrepError, run_prep

    cfg = config_from_options(preset, set_)
    target = data_root or root or Path(cfg.data.root)
    require_data_root(str(target))
    try:
        report = run_prep(target, cfg.data, max_invalid_ratio=max_invalid_frames)
    except PrepError as error:
        render_problems(error.problems, fmt)
        typer.echo(f"prep refused {target}: fix the problems above; nothing was written", err=True)
        raise typer.Exit(1) from None
    for name, count in sorted(report.records.items()):
        typer.echo(f"{name}: {count} records")
    excluded = sum(len(frames) for frames in report.excluded_frames.values())
    typer.echo(f"{excluded} invalid frame(s) excluded in {len(report.excluded_frames)} scene(s) "
               "(listed in metadata/scannet_frame_lists.json)")
    typer.echo(f"prepared {sum(len(s) for s in report.scenes.values())} scenes under {target} "
               f"in {report.seconds:.1f} s")
