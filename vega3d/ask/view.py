"""``vega3d ask --view``: answers drawn by the evaluation viewer over the capture's own points.

A user scene has no prepared point cloud (no mesh), so the viewer's points are back-projected from the staged
scene's depth frames (``VIEW_FRAMES`` evenly spread frames, the training's ``vega3d.data.geometry``
back-projection, one point per ``VIEW_VOXEL`` cell so overlapping frames do not pile up), in the model's
aligned frame, where the answer's ``aligned`` boxes are axis-aligned. One viewer item per answer:

| operation | description / question | prediction | red boxes (answer) | grey boxes (candidates) | score |
|---|---|---|---|---|---|
| question | the question (and situation) | the answer | - | - | 0 |
| ground | the description | best proposal and how many are selected | selected (``--multiple``) or best | every proposal | best proposal's score |
| caption | the box's centre | the caption | the captioned box | - | 0 |

Nothing is graded (there is no ground truth): the page hides correct/incorrect.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vega3d.data.frames import load_scene_frames, scene_frame_ids
from vega3d.data.geometry import voxelize, world_coordinates
from vega3d.data.layout import DataLayout
from vega3d.data.sampling import uniform_indices

if TYPE_CHECKING:
    from vega3d.ask.engine import AskEngine, AskRequest

VIEW_FRAMES = 32
VIEW_VOXEL = 0.02  # metres
VIEW_POINTS = 20_000  # one scene: ~120 KB of points in the page
ASK_LEGEND = {"gt": "candidate", "pred": "answer", "gtColor": "#8c8c8c", "graded": False}


def capture_points(layout: DataLayout, scene: str, max_frames: int = VIEW_FRAMES,
                   voxel: float = VIEW_VOXEL) -> tuple[np.ndarray, np.ndarray]:
    """Aligned points [N, 3] float32 and colours [N, 3] uint8 of a staged scene: valid depth pixels of up to
    ``max_frames`` evenly spread frames, the first point of each ``voxel``-sized cell kept."""
    ids = scene_frame_ids(layout, scene)
    picked = sorted({ids[i] for i in uniform_indices(len(ids), min(max_frames, len(ids)))})
    frames = load_scene_frames(layout, scene, picked)
    xyz, valid = world_coordinates(frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align)
    points, colours = xyz[valid], frames.rgb[valid]  # [N, 3] each
    _, first = np.unique(voxelize(points, voxel), axis=0, return_index=True)
    first.sort()
    return points[first], colours[first]


def _aligned(box: Mapping[str, Any]) -> list[float]:
    return [round(float(v), 2) for v in box["aligned"]]


def ask_item(index: int, request: AskRequest, result: Mapping[str, Any], scene_index: int) -> dict[str, Any]:
    """One viewer item of one answer (see the module docstring)."""
    operation = result["operation"]
    item: dict[str, Any] = {"task": operation, "id": f"ask-{index}", "scene": scene_index, "r": [], "gt": [],
                            "pred": [], "score": 0.0, "ok": True, "type": "", "metric": ""}
    if operation == "question":
        situation = f"situation: {request.situation} " if request.situation else ""
        item.update(q=f"{situation}{request.question}", p=result["answer"])
    elif operation == "ground":
        chosen = result["boxes"] if request.multiple else [result["best"]] if result["best"] else []
        best = max((p["score"] for p in result["proposals"]), default=0.0)
        item.update(q=request.ground, gt=[_aligned(p) for p in result["proposals"]], pred=[_aligned(b) for b in chosen],
                    score=round(float(best), 4),
                    p=f"{len(chosen)} box(es) of {len(result['proposals'])} candidates",
                    metric=f"no-target score {result['no_target_score']:.2f}" if result["proposals"] else "")
    else:
        centre = ", ".join(f"{v:.2f}" for v in result["box"]["aligned"][:3])
        item.update(q=f"describe the object at ({centre})", p=result["caption"], pred=[_aligned(result["box"])])
    return item


def write_ask_view(engine: AskEngine, requests: Sequence[AskRequest], results: Sequence[Mapping[str, Any]],
                   output: str, max_points: int = VIEW_POINTS) -> int:
    """Write the viewer of ``results`` (``engine.ask(requests)``) to ``output`` (path or URI); returns its bytes."""
    from vega3d import storage
    from vega3d.viewer.html import render_html, subsample_points

    staged = [engine.stage(request) for request in requests]  # cached: the scenes the answers came from
    scenes = list(dict.fromkeys(s.scene for s in staged))
    items = [ask_item(i, r, res, scenes.index(s.scene))
             for i, (r, res, s) in enumerate(zip(requests, results, staged, strict=True))]
    blocks, decoders = [], []
    for name in scenes:
        block, decoder = subsample_points(*capture_points(engine.stager.layout, name), max_points)
        blocks.append(block)
        decoders.append(decoder)
    sources = ", ".join(dict.fromkeys(s.source for s in staged))
    html = render_html(items, scenes, blocks, decoders, f"vega3d ask: {sources}", {}, ASK_LEGEND)
    storage.write_text(output, html)
    return len(html.encode())
