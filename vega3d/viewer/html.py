"""The evaluation viewer: one self-contained HTML file per run (``vega3d view``, the report step).

For every evaluated record it shows the scene's coloured point cloud (subsampled), the ground-truth boxes
(green) and predicted boxes (red) with their IoU (ScanRefer, Multi3DRefer; the captioned box of Scan2Cap),
the description or question, the prediction and the references; a list of every record, filterable by
task, correct/incorrect and eval type (unique/multiple, Multi3DRefer's types, SQA3D's question types),
sorted worst first (``vega3d.viewer.records``). The 3D part is plotly.js, embedded: the file opens from
disk, from MLflow's artifact view and as a Kubeflow HTML artifact with no network.

Inputs: a prepared data root (``processed/`` records, ``scannet/pcd_with_global_alignment/<scene>.npz`` point
clouds, ``metadata/scannet_<split>_gt_box.json`` for ScanQA's objects) and an evaluation output folder/URI with
``<task>/predictions.jsonl`` (what ``vega3d eval`` and the pipeline's evaluate steps write).

Encoding (what makes the size budget hold): the records are one JSON document and the points one binary
block (per point x, y, z quantised to uint8 over the scene's extent, at most 4 cm for a 10 m room, plus
uint8 RGB: 6 bytes); both are gzip-compressed and base64-encoded, and so is plotly.min.js. The page
decompresses them with the browser's ``DecompressionStream``.

Size at the paper's val sizes with default subsampling: 30,890 records (``PAPER_VAL_RECORDS``) over at most
the 312 ScanNet v2 val scenes, ``DEFAULT_POINTS`` = 1,200 points per scene. ``estimate_size`` measures it by
rendering the real template from synthetic records with the paper's text lengths (module constants below):

    plotly.min.js 7.1.0   4,815,814 B -> gzip 1,468,879 B -> base64                          1.96 MB
    records               text 5.9 MB + ids, boxes, scores 5.8 MB JSON -> gzip 3.15 MB -> base64   4.20 MB
    points                312 scenes x 1,200 x 6 B = 2.25 MB (random: incompressible) -> base64  3.00 MB
    total (measured)                                                9,167,438 B <= 10 MB (10,000,000 B)

Points cost 312 x 6 x 4/3 = 2,496 B per point per scene, so ``--points`` above ~1,530 breaks 10 MB at the paper's
size; smaller runs can afford more. ``--max-records N`` caps each task at its N worst records.
(tests/viewer/test_size.py checks the total and the per-point cost.)
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

DEFAULT_POINTS = 1200
SIZE_BUDGET = 10_000_000  # bytes
# SPEC.md section 4: evaluation split sizes; scenes: every ScanNet v2 val scene (the splits' scenes lie inside).
PAPER_VAL_RECORDS: dict[str, int] = {"scanrefer": 9508, "multi3drefer": 11120, "scan2cap": 2068, "scanqa": 4675,
                                     "sqa3d": 3519}
PAPER_VAL_SCENES = 312
POINT_BYTES = 6  # x, y, z, r, g, b as uint8


@dataclass(frozen=True)
class ViewerSummary:
    """What one viewer file holds."""

    path: str
    records: dict[str, int]  # per task
    incorrect: dict[str, int]  # per task
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


ITEM_COLUMNS = ("task", "id", "scene", "score", "ok", "type", "metric", "gt", "pred")
TEXT_COLUMNS = ("q", "p")


def pack_items(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Items -> columns (one list per field) with every text stored once in ``texts``.

    Columns put alike values next to each other, which gzip compresses far better than interleaved
    records; the text table stores each description once although Scan2Cap lists the same ScanRefer
    descriptions as references and QA answers repeat. The page rebuilds the items (``unpack`` in the template).
    """
    texts: dict[str, int] = {}

    def ref(text: str) -> int:
        return texts.setdefault(text, len(texts))

    columns: dict[str, list] = {name: [it[name] for it in items] for name in ITEM_COLUMNS}
    columns["ok"] = [int(v) for v in columns["ok"]]
    for name in TEXT_COLUMNS:
        columns[name] = [ref(it[name]) for it in items]
    columns["r"] = [[ref(t) for t in it["r"]] for it in items]
    return {"texts": list(texts), "columns": columns}


def render_html(items: Sequence[Mapping[str, Any]], scenes: Sequence[str], point_blocks: Sequence[np.ndarray],
                decoders: Sequence[Mapping[str, Any]], title: str, summary: Mapping[str, Any],
                legend: Mapping[str, Any] | None = None) -> str:
    """The HTML text: template + gzip/base64 plotly, packed records JSON and point bytes.

    ``legend`` renames what the page shows (defaults: an evaluation's): ``gt`` and ``pred`` the two box sets,
    ``gtColor`` the first set's colour, ``graded`` False hides correct/incorrect (``vega3d ask --view``).
    """
    offsets, start = [], 0
    for block in point_blocks:
        offsets.append([start, len(block)])
        start += len(block)
    data = {
        "title": title,
        "summary": summary,
        "scenes": [{"name": name, "offset": off[0], "count": off[1], **dec}
                   for name, off, dec in zip(scenes, offsets, decoders, strict=True)],
        **pack_items(items),
    }
    if legend is not None:
        data["legend"] = dict(legend)
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
    absent: list[tuple[str, str]] = []  # (uri, task): warned about once some task has predictions
    for task in tasks:
        uri = storage.join(eval_uri, task, "predictions.jsonl")
        if not storage.exists(uri):
            absent.append((uri, task))
            continue
        records = task_lib.load_records(str(data_root), task)[:max_samples]
        pset = load_predictions(task, uri, [r["id"] for r in records])
        if len(pset.missing) == len(records):
            raise ValueError(f"{uri}: none of its ids is a {task} record of {data_root}; wrong data root?")
        result = task_lib.score(task, records, pset, settings)
        metrics[task] = result.metrics
        boxes = DataLayout(data_root).gt_box_path(task_lib.DEFAULT_SPLITS[task])
        gt_boxes = json.loads(boxes.read_text()) if boxes.is_file() else {}
        items.extend(task_items(result, records, pset.by_id, gt_boxes)[:max_records])
    if not items:
        shown = eval_uri if storage.is_remote(eval_uri) else str(Path(eval_uri).resolve())
        raise FileNotFoundError(f"{shown}: no <task>/predictions.jsonl of {list(tasks)}; run `vega3d eval` first")
    for uri, task in absent:
        logger.warning("%s: no predictions; %s is left out of the viewer", uri, task)
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
    incorrect: dict[str, int] = {}
    for it in items:
        counts[it["task"]] = counts.get(it["task"], 0) + 1
        incorrect[it["task"]] = incorrect.get(it["task"], 0) + (not it["ok"])
    return ViewerSummary(path=output, records=counts, incorrect=incorrect, scenes=len(scenes),
                         bytes=len(html.encode()))


# Words per text field at the paper's val sets: (query, prediction, references per record, words per reference).
# ScanRefer descriptions average 20.3 words (Multi3DRefer's are ScanRefer-style, generated separately here
# although many are ScanRefer's own); Scan2Cap's references are ScanRefer's val descriptions themselves, 4.6 per
# object (9,508 / 2,068); ScanQA questions 13.7 words, ~2 answers of 2 words; SQA3D situation + question about
# 28 words, one-word answers.
PAPER_TEXT_WORDS: dict[str, tuple[int, int, float, int]] = {
    "scanrefer": (21, 3, 1, 1), "multi3drefer": (21, 4, 1, 2), "scan2cap": (5, 20, 4.6, 21),
    "scanqa": (14, 2, 2, 2), "sqa3d": (28, 1, 1, 1),
}
PAPER_BOXES: dict[str, tuple[int, int]] = {"scanrefer": (1, 1), "multi3drefer": (2, 2), "scan2cap": (1, 1),
                                           "scanqa": (2, 0), "sqa3d": (0, 0)}
VOCABULARY = 3000


def estimate_size(max_points: int = DEFAULT_POINTS, records: Mapping[str, int] = PAPER_VAL_RECORDS,
                  scenes: int = PAPER_VAL_SCENES, seed: int = 0) -> int:
    """Bytes of the viewer file at the given record counts, measured on a synthetic run, not guessed.

    Renders the real template from synthetic items with the paper's text lengths (``PAPER_TEXT_WORDS``; words
    of 3-9 random letters from a vocabulary of 3,000 with Zipf frequencies 1/rank, as natural language has),
    Scan2Cap's references taken from the ScanRefer descriptions as on the real val sets, boxes (``PAPER_BOXES``,
    random centimetre values), ids shaped like ours, and ``scenes`` point clouds of ``max_points`` uniformly
    random points (incompressible, unlike real scans).
    """
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(VOCABULARY)]
    zipf = 1.0 / np.arange(1, VOCABULARY + 1)
    stream = iter(rng.choice(VOCABULARY, 2_000_000, p=zipf / zipf.sum()).tolist())

    def words(n: int) -> str:
        return " ".join(vocab[next(stream)] for _ in range(n))

    def boxes(n: int) -> list[list[float]]:
        return np.round(rng.uniform(0, 8, size=(n, 6)), 2).tolist()

    descriptions = [words(PAPER_TEXT_WORDS["scanrefer"][0]) for _ in range(records.get("scanrefer", 0))]
    items = []
    for task, count in records.items():
        q, p, n_refs, ref_words = PAPER_TEXT_WORDS[task]
        n_gt, n_pred = PAPER_BOXES[task]
        for k in range(count):
            if task == "scan2cap" and descriptions:
                first = int(k * n_refs) % len(descriptions)
                refs = descriptions[first: first + max(1, int((k + 1) * n_refs) - int(k * n_refs))]
            else:
                refs = [words(ref_words) for _ in range(int(n_refs))]
            items.append({"task": task, "id": f"{task}-val-scene{k % 1000:04d}_00-{k}-{k % 7}", "scene": k % scenes,
                          "q": descriptions[k] if task == "scanrefer" else words(q), "p": words(p), "r": refs,
                          "gt": boxes(n_gt), "pred": boxes(n_pred), "score": round(float(rng.random()), 4),
                          "ok": bool(rng.random() < 0.5), "type": "multiple", "metric": "IoU 0.42"})
    pts = [subsample_points(rng.uniform(0, 8, (max_points, 3)), rng.integers(0, 256, (max_points, 3)), max_points)
           for _ in range(scenes)]
    html = render_html(items, [f"scene{i:04d}_00" for i in range(scenes)], [b for b, _ in pts], [d for _, d in pts],
                       "vega3d evaluation", {})
    return len(html.encode())
