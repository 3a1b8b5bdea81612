"""``vega3d view`` (the evaluation viewer) and ``vega3d visualize features`` (generative-feature pictures)."""

from __future__ import annotations

from typing import Annotated

import typer

from vega3d.cli.options import DataRootOption, PresetOption, SetOption, config_from_options

visualize_app = typer.Typer(help="Pictures of generative features.", no_args_is_help=True)


def view_command(
    preset: PresetOption = "tiny",
    overrides: SetOption = None,
    data_root: DataRootOption = None,
    eval_uri: Annotated[str | None, typer.Option(
        "--eval", help="Evaluation output holding <task>/predictions.jsonl (default: eval.output_uri).")] = None,
    output: Annotated[str | None, typer.Option(
        "--output", help="HTML file (path or s3://) to write (default: <eval>/viewer.html).")] = None,
    max_records: Annotated[int | None, typer.Option(
        "--max-records", min=1, help="Keep only the worst N records of each task (default: all).")] = None,
    points: Annotated[int | None, typer.Option(
        "--points", min=1, help="Points per scene after subsampling (default: 1200, what keeps the paper's val sets under 10 MB).")] = None,
) -> None:
    """Write the self-contained 3D viewer of an evaluation (one HTML file, opens with no network)."""
    from vega3d import storage
    from vega3d.data.root import EVAL_FOLDERS
    from vega3d.errors import require_data_root
    from vega3d.evaluation.tasks import ScoreSettings
    from vega3d.viewer.html import DEFAULT_POINTS, write_viewer

    cfg = config_from_options(preset, overrides, data_root)
    require_data_root(cfg.data.root, EVAL_FOLDERS)  # records and point clouds come from it
    source = eval_uri or cfg.eval.output_uri
    target = output or storage.join(source, "viewer.html")
    settings = ScoreSettings(multi3drefer_threshold=cfg.model.multi3drefer_threshold,
                             ground_temperature=cfg.model.ground_temperature, caption_iou=cfg.eval.caption_iou,
                             meteor=False)
    try:
        summary = write_viewer(cfg.data.root, source, target, list(cfg.eval.tasks), settings, max_records,
                               points or DEFAULT_POINTS, title=f"vega3d evaluation: {source}",
                               max_samples=cfg.eval.max_samples)
    except (FileNotFoundError, ValueError) as error:
        raise typer.BadParameter(str(error)) from None
    counts = ", ".join(f"{task} {n}" for task, n in summary.records.items())
    typer.echo(f"viewer: {summary.path} ({summary.bytes / 1e6:.2f} MB; {counts}; {summary.scenes} scenes)")


@visualize_app.command("features")
def features_command(
    scene: Annotated[str, typer.Option("--scene", help="Scene id, e.g. scene0011_00.")],
    preset: PresetOption = "tiny",
    overrides: SetOption = None,
    data_root: DataRootOption = None,
    encoder: Annotated[str | None, typer.Option(
        "--encoder", help="Generative encoder id of the registry (default: generative.backbone), e.g. wan_t2v, sd21, dinov3.")] = None,
    frames: Annotated[int, typer.Option("--frames", min=2, help="Frames to draw (the first N of the sampled list).")] = 4,
    patch: Annotated[str | None, typer.Option(
        "--patch", help="Query cell 'frame,row,col' of the correspondence picture (default: centre of frame 0).")] = None,
    feature_id: Annotated[str | None, typer.Option(
        "--feature-id", help="Read these offline features from the store instead of running the encoder "
                             "(any feature id, also of offline-only encoders: vggt, seva, vmem).")] = None,
    output: Annotated[str, typer.Option("--output", help="Folder or s3:// URI for the PNGs and the score JSON.")] = "pictures",
    device: Annotated[str, typer.Option("--device", help="Torch device: auto, cpu, cuda...")] = "auto",
) -> None:
    """PCA map per frame, cross-view correspondence of one patch and the multi-view consistency score."""
    import json

    from transformers.utils import logging as hf_logging

    from vega3d.generative.extract import default_store_uri, resolve_device
    from vega3d.generative.registry import build_encoder
    from vega3d.viewer.features import encoder_pictures, stored_pictures, write_pictures

    sets = [*(overrides or []), *([f"generative.backbone={encoder}"] if encoder else [])]
    cfg = config_from_options(preset, sets, data_root).with_paths_under_root()
    query = None
    if patch is not None:
        try:
            query = tuple(int(v) for v in patch.split(","))
        except ValueError:
            query = ()
        if len(query) != 3:
            raise typer.BadParameter(f"--patch {patch!r}: expected 'frame,row,col', e.g. 0,2,3")
    hf_logging.disable_progress_bar()  # stdout carries the JSON summary
    try:
        if feature_id:
            pictures = stored_pictures(cfg, default_store_uri(cfg), feature_id, scene, frames, query)
        else:
            model = build_encoder(cfg.generative, cfg.model.pooled_grid, resolve_device(device))
            pictures = encoder_pictures(cfg, model, scene, frames, query)
    except (FileNotFoundError, ValueError) as error:  # FeatureStoreError is a ValueError
        raise typer.BadParameter(str(error)) from None
    paths = write_pictures(pictures, output, f"{scene}_{feature_id or model.encoder_id}")
    typer.echo(json.dumps({"files": paths, **pictures.summary()}))
