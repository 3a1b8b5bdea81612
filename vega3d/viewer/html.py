"""The evaluation viewer: one self-contained HTML file per run (``vega3d view``, the report step).

For every evaluated record it shows the scene's coloured point cloud (subsampled), the ground-truth boxes
(green) and predicted boxes (red) with their IoU (ScanRefer, Multi3DRefer; the captioned box of Scan2Cap),
the description or question, the prediction and the references; a list of every record, filterable by
task, correct/incorrect and eval type (unique/multiple, Multi3DRefer's types, SQA3D's question types),
sorted worst first (``vega3d.viewer.records``). The 3D part is plotly.js, embedded: the file opens from
disk, from MLflow's artifact view and as a Kubeflow HTML artifact with no network.

Inputs: a prepared data root (``processed/`` records, ``metadata/`` predicted boxes are not needed,
``scannet/pcd_with_global_alignment/<scene>.npz`` point clouds) and an evaluation output folder/URI with
``<task>/predictions.jsonl`` (what ``vega3d eval`` and the pipeline's evaluate steps write).

Encoding (what makes the size budget hold): the records are one JSON document and the points one binary
block (per point x, y, z quantised to uint8 over the scene's extent, at most 4 cm for a 10 m room, plus
uint8 RGB: 6 bytes); both are gzip-compressed and base64-encoded, and so is plotly.min.js. The page
decompresses them with the browser's ``DecompressionStream``.

Size at the paper's val sizes with default subsampling (``PAPER_VAL_RECORDS``, 30,890 records over at most
the 312 ScanNet val scenes, ``DEFAULT_POINTS`` = 2,000 points per scene), ``estimate_size``:

    plotly.min.js 7.1.0      4,815,814 B  -> gzip 1,468,879 B -> base64         1.96 MB
    points   312 x 2,000 x 6 B = 3.74 MB, gzip <= 1.0 (quantised, barely compressible) -> base64 <= 4.99 MB
    records  30,890 x ~520 B JSON (ScanRefer's ~20-word descriptions; Scan2Cap carries every description of
             its object as references) = 16.1 MB -> gzip ~ 0.25 -> base64             ~ 5.4 MB ... over

so the records' text is the large part; ``estimate_size`` measures it instead of guessing: it builds the
viewer payload from synthetic items with the paper's counts and text lengths and returns the exact file
size (tests/viewer/test_size.py: under 10 MB; the README quotes the measured number).
"""

from __future__ import annotations

import base64
import gzip
import importlib.resources
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vega3d import storage
from vega3d.data.layout import DataLayout

logger = logging.getLogger(__name__)

DEFAULT_POINTS = 2000
SIZE_BUDGET = 10 * 1024 * 1024
# SPEC.md section 4: evaluation split sizes; scenes: every ScanNet v2 val scene (the splits' scenes lie inside).
PAPER_VAL_RECORDS: dict[str, int] = {"scanrefer": 9508, "multi3drefer": 11120, "scan2cap": 2068, "scanqa": 4675,
                                     "sqa3d": 3519}
PAPER_VAL_SCENES = 312
POINT_BYTES = 6  # x, y, z, r, g, b as uint8


@dataclass(frozen=True)
class ViewerSummary:
    """What one viewer file holds."""

    path: str
    records: dict[str, int]
    scenes: int
    bytes: int


def _b64gzip(data: bytes) -> str:
    return base64.b64encode(gzip.compress(data, compresslevel=9, mtime=0)).decode("ascii")


def plotly_js() -> bytes:
    """The plotly.min.js shipped with the plotly Python package (no network, pinned version)."""
    return (importlib.resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()


def subsample_points(xyz: np.ndarray, rgb: np.ndarray, max_points: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """[N,3] float + [N,3] uint8 -> (uint8 [n, 6] quantised x,y,z,r,g,b; {"min", "scale"} to decode, n <= max).

    x = min + q * scale per axis, q in 0..255; the subsample is uniform without replacement (fixed seed).
    """
    if len(xyz) > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(len(xyz), max_points, replace=False))
        xyz, rgb = xyz[keep], rgb[keep]
    xyz = np.asarray(xyz, dtype=np.float64)
    low = xyz.min(axis=0) if len(xyz) else np.zeros(3)
    scale = np.maximum((xyz.max(axis=0) - low) / 255.0, 1e-6) if len(xyz) else np.ones(3)
    quantised = np.clip(np.rint((xyz - low) / scale), 0, 255).astype(np.uint8)
    block = np.concatenate([quantised, np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)], axis=1)
    return block, {"min": [round(float(v), 4) for v in low], "scale": [float(f"{v:.6g}") for v in scale]}


def scene_points(layout: DataLayout, scene: str, max_points: int) -> tuple[np.ndarray, dict]:
    """The subsampled, quantised point cloud of a scene from prep's aligned points."""
    path = layout.aligned_points_path(scene)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no aligned point cloud of {scene}; run `vega3d data prep` on this root")
    with np.load(path) as npz:
        return subsample_points(npz["xyz"], npz["rgb"], max_points)


def render_html(items: Sequence[Mapping[str, Any]], scenes: Sequence[str], point_blocks: Sequence[np.ndarray],
                decoders: Sequence[Mapping[str, Any]], title: str, summary: Mapping[str, Any]) -> str:
    """The HTML text: template + gzip/base64 plotly, records JSON and point bytes."""
    offsets, start = [], 0
    for block in point_blocks:
        offsets.append([start, len(block)])
        start += len(block)
    data = {
        "title": title,
        "summary": summary,
        "scenes": [{"name": name, "offset": off[0], "count": off[1], **dec}
                   for name, off, dec in zip(scenes, offsets, decoders, strict=True)],
        "items": list(items),
    }
    points = np.concatenate(point_blocks).tobytes() if point_blocks else b""
    template = (importlib.resources.files("vega3d.viewer") / "template.html").read_text()
    escaped_title = title.replace("&", "&amp;").replace("<", "&lt;")
    return (template.replace("__TITLE__", escaped_title)
            .replace("__PLOTLY_GZ__", _b64gzip(plotly_js()))
            .replace("__DATA_GZ__", _b64gzip(json.dumps(data, separators=(",", ":")).encode()))
            .replace("__POINTS_GZ__", _b64gzip(points)))


def collect_items(data_root: str | Path, eval_uri: str, tasks: Sequence[str], settings, max_records: int | None,
                  max_samples: int | None = None) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Score each task's predictions under ``eval_uri`` and return (viewer items, metrics by task).

    ``max_samples`` is the evaluation's ``eval.max_samples`` (it scored the first N records, so does this);
    ``max_records`` keeps the worst N items of each task. A task without ``predictions.jsonl`` is skipped
    with a warning; none at all is an error naming the folder.
    """
    from vega3d.evaluation import tasks as task_lib
    from vega3d.evaluation.predictions import load_predictions
    from vega3d.viewer.records import task_items

    items: list[dict[str, Any]] = []
    metrics: dict[str, dict[str, float]] = {}
    for task in tasks:
        uri = storage.join(eval_uri, task, "predictions.jsonl")
        if not storage.exists(uri):
            logger.warning("%s: no predictions; %s is left out of the viewer", uri, task)
            continue
        records = task_lib.load_records(str(data_root), task)[:max_samples]
        pset = load_predictions(task, uri, [r["id"] for r in records])
        if len(pset.missing) == len(records):
            raise ValueError(f"{uri}: none of its ids is a {task} record of {data_root}; wrong data root?")
        result = task_lib.score(task, records, pset, settings)
        metrics[task] = result.metrics
        items.extend(task_items(result, records, pset.by_id)[:max_records])
    if not items:
        raise FileNotFoundError(f"{eval_uri}: no <task>/predictions.jsonl of {list(tasks)}; run `vega3d eval` first")
    return items, metrics


def write_viewer(data_root: str | Path, eval_uri: str, output: str, tasks: Sequence[str], settings,
                 max_records: int | None = None, max_points: int = DEFAULT_POINTS, title: str = "vega3d evaluation",
                 max_samples: int | None = None) -> ViewerSummary:
    """Build the viewer of one evaluation output and write it atomically to ``output`` (path or URI)."""
    items, metrics = collect_items(data_root, eval_uri, tasks, settings, max_records, max_samples)
    layout = DataLayout(data_root)
    scenes = sorted({it["scene"] for it in items})
    index = {name: i for i, name in enumerate(scenes)}
    for it in items:
        it["scene"] = index[it["scene"]]
    blocks, decoders = zip(*(scene_points(layout, s, max_points) for s in scenes), strict=True)
    html = render_html(items, scenes, blocks, decoders, title, metrics)
    storage.write_text(output, html)
    counts: dict[str, int] = {}
    for it in items:
        counts[it["task"]] = counts.get(it["task"], 0) + 1
    return ViewerSummary(path=output, records=counts, scenes=len(scenes), bytes=len(html.encode()))
