"""``vega3d ask``: one question, grounding or caption on a user's scene, printed as JSON.

    vega3d ask --scene capture/ --question "What is on the table?"
    vega3d ask --scene scans/scene0000_00/scene0000_00.sens --ground "the black chair by the window" --multiple
    vega3d ask --scene capture/ --caption-box 1.2,0.4,0.5,0.6,0.6,0.9 --checkpoint models:/vega3d@champion
    vega3d ask --scene capture/ --ground "the lamp" --view answer.html   # and draw it
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from vega3d.cli.options import DataRootOption, PresetOption, SetOption, config_from_options

CheckpointOption = Annotated[str | None, typer.Option(
    "--checkpoint", help="Model: a saved model folder, an s3:// folder or models:/<name>@<alias> from the MLflow "
                         "registry (default: model.checkpoint under the data root).")]
TrackingOption = Annotated[str | None, typer.Option(
    "--tracking-uri", envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI for a models:/ checkpoint.")]


def parse_box(text: str, option: str) -> list[float]:
    """``"cx,cy,cz,dx,dy,dz"`` -> 6 floats; a usage error naming ``option`` otherwise."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 6:
        raise typer.BadParameter(f"{option} takes 6 comma-separated numbers cx,cy,cz,dx,dy,dz, got {text!r}")
    return values


def engine_config(preset: str, overrides: list[str] | None, data_root: str | None):
    """The config of ``--preset``/``--set``/``--data-root`` (a usage error names a bad field)."""
    if data_root is not None and "://" not in data_root:
        data_root = str(Path(data_root).resolve())  # relative checkpoints resolve under it, not the staging root
    return config_from_options(preset, overrides, data_root)


def ask_command(
    scene: Annotated[Path, typer.Option(
        "--scene", help="A ScanNet posed_images scene folder, a .sens file, or a nerfstudio folder (transforms.json "
                        "with depth).")],
    question: Annotated[str | None, typer.Option("--question", help="Ask a question (ScanQA style).")] = None,
    situation: Annotated[str | None, typer.Option(
        "--situation", help="With --question: where you stand and face (SQA3D style).")] = None,
    ground: Annotated[str | None, typer.Option("--ground", help="Find the object(s) this text describes.")] = None,
    multiple: Annotated[bool, typer.Option(
        "--multiple/--single", help="With --ground: zero, one or several objects (Multi3DRefer) or the best one.")] = False,
    caption_box: Annotated[str | None, typer.Option(
        "--caption-box", help="Describe the object in this box: cx,cy,cz,dx,dy,dz.")] = None,
    boxes: Annotated[Path | None, typer.Option(
        "--boxes", help="JSON list of candidate boxes [cx,cy,cz,dx,dy,dz] (default: built-in proposals).")] = None,
    box_frame: Annotated[str, typer.Option(
        "--box-frame", help="Frame of the boxes you give: 'aligned' (the model's, ScanNet's) or 'input' (the "
                            "capture's own; axis-aligned there).")] = "aligned",
    alignment: Annotated[Path | None, typer.Option(
        "--alignment", help="4x4 input -> aligned matrix as text (default: the scene's own, else estimated).")] = None,
    checkpoint: CheckpointOption = None,
    preset: PresetOption = "tiny",
    overrides: SetOption = None,
    data_root: DataRootOption = None,
    tracking_uri: TrackingOption = None,
    output: Annotated[Path | None, typer.Option("--output", help="Write the JSON here (default: stdout).")] = None,
    view: Annotated[str | None, typer.Option(
        "--view", help="Also draw the answer in the 3D viewer: one self-contained HTML file (path or s3://) with "
                       "the scene's points, the answer's boxes (red) and the candidates (grey).")] = None,
) -> None:
    """Answer a question about, find an object in, or caption a box of your own scan; JSON out."""
    import numpy as np

    from vega3d.ask.engine import AskEngine, AskRequest
    from vega3d.ask.proposals import read_boxes
    from vega3d.data.scannet import read_matrix

    request = AskRequest(
        scene=str(scene), question=question, situation=situation, ground=ground, multiple=multiple,
        caption_box=None if caption_box is None else parse_box(caption_box, "--caption-box"),
        boxes=None if boxes is None else read_boxes(boxes), box_frame=box_frame,
        axis_alignment=None if alignment is None else np.asarray(read_matrix(alignment)).tolist(),
    )
    try:
        request.validate()
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if not scene.exists():
        raise typer.BadParameter(f"--scene {scene}: does not exist")
    from vega3d.preflight import file_folders, preflight

    preflight(file_folders([str(f) for f in (output, view) if f is not None]))  # before the model loads
    engine = AskEngine.load(engine_config(preset, overrides, data_root), checkpoint, tracking_uri)
    (result,) = engine.ask([request])
    if view is not None:
        from vega3d.ask.view import write_ask_view

        size = write_ask_view(engine, [request], [result], view)
        typer.echo(f"viewer: {view} ({size / 1e6:.2f} MB)", err=True)
    text = json.dumps(result, indent=1)
    if output is None:
        typer.echo(text)
    else:
        from vega3d.storage import write_text

        write_text(str(output), text + "\n")
