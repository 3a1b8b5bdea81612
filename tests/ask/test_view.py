"""`vega3d ask --view`: the answer drawn by the evaluation viewer over points back-projected from the capture."""

from __future__ import annotations

import base64
import gzip
import io
import json
import re

import numpy as np
import pytest
from PIL import Image
from scipy.spatial import cKDTree

from tests.ask.helpers import description_of, question_of, random_rigid, scene_dir, write_nerfstudio
from tests.evaluation.conftest import BASELINE
from vega3d.ask.engine import AskRequest
from vega3d.ask.view import VIEW_VOXEL, ask_item, capture_points
from vega3d.data import scannet
from vega3d.data.geometry import voxelize
from vega3d.data.layout import DataLayout
from vega3d.evaluation import tasks
from vega3d.testing.browser import HeadlessChromium, chromium_path

SCENE = "scene0002_00"
PRED_RED = np.array([230, 0, 0])  # PRED_COLOR of the template
CANDIDATE_GREY = np.array([140, 140, 140])  # ASK_LEGEND's gtColor


def _page_data(html: str) -> dict:
    """The viewer's packed JSON, decoded the way the page does."""
    encoded = re.search(r'<script type="text/plain" id="data-gz">([^<]+)</script>', html).group(1)
    return json.loads(gzip.decompress(base64.b64decode(encoded)))


def test_capture_points_lie_on_the_scene_in_the_aligned_frame_whatever_the_input_frame(engine, prepared_root,
                                                                                       tmp_path):
    layout = DataLayout(prepared_root)
    align = scannet.read_axis_alignment(layout.scan_meta_path(SCENE))
    transform = random_rigid(5)  # the capture's world = transform @ aligned
    capture = write_nerfstudio(layout, SCENE, tmp_path / SCENE, transform @ align, np.linalg.inv(transform))
    from_capture = capture_points(engine.stager.layout, engine.stage(AskRequest(scene=str(capture), question="q")).scene)
    staged = engine.stage(AskRequest(scene=str(scene_dir(prepared_root, SCENE)), question="q"))
    from_folder = capture_points(engine.stager.layout, staged.scene)
    # same frames, same back-projection: the same points (float32 through two different frames: ~1e-6 m)
    assert from_capture[0].shape == from_folder[0].shape and from_capture[0].shape[1] == 3
    np.testing.assert_allclose(np.sort(from_capture[0], axis=0), np.sort(from_folder[0], axis=0), atol=1e-5)
    xyz, rgb = from_capture
    assert rgb.dtype == np.uint8 and rgb.shape == xyz.shape
    # on the scene's mesh, which prep put in the aligned frame (synthetic mesh vertices are ~3 cm apart)
    with np.load(layout.aligned_points_path(SCENE)) as npz:
        distance = cKDTree(npz["xyz"]).query(xyz)[0]
    assert np.median(distance) < 0.03 and distance.max() < 0.05
    # one point per 2 cm cell
    assert len(np.unique(voxelize(xyz, VIEW_VOXEL), axis=0)) == len(xyz)


def test_items_carry_the_answers_in_the_aligned_frame(engine, prepared_root):
    scene = str(scene_dir(prepared_root, SCENE))
    proposals = tasks.load_proposals(str(prepared_root), "val")[f"scannet/{SCENE}"]
    requests = [AskRequest(scene=scene, question="what is it?", situation="I face the door."),
                AskRequest(scene=scene, ground="the chair", multiple=True, boxes=proposals[:5]),
                AskRequest(scene=scene, ground="the chair", boxes=proposals[:5]),
                AskRequest(scene=scene, caption_box=proposals[2])]
    results = engine.ask(requests)
    items = [ask_item(i, r, res, 0) for i, (r, res) in enumerate(zip(requests, results, strict=True))]
    assert [it["task"] for it in items] == ["question", "ground", "ground", "caption"]
    assert items[0]["q"] == "situation: I face the door. what is it?" and items[0]["p"] == results[0]["answer"]
    assert items[0]["gt"] == items[0]["pred"] == []
    rounded = [[round(v, 2) for v in box] for box in proposals[:5]]
    for item, result in zip(items[1:3], results[1:3], strict=True):
        assert item["q"] == "the chair" and item["gt"] == rounded  # every candidate, grey
        assert item["score"] == round(max(result["scores"][:-1]), 4)
    assert items[1]["pred"] == [[round(v, 2) for v in b["aligned"]] for b in results[1]["boxes"]]
    assert items[1]["p"] == f"{len(results[1]['boxes'])} box(es) of 5 candidates"
    assert items[2]["pred"] == [[round(v, 2) for v in results[2]["best"]["aligned"]]]
    assert items[3]["pred"] == [rounded[2]] and items[3]["p"] == results[3]["caption"]
    assert items[3]["q"] == "describe the object at ({:.2f}, {:.2f}, {:.2f})".format(*proposals[2][:3])


@pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (`apt-get install chromium`)")
def test_ask_view_draws_the_answer_offline(checkpoint, engine, prepared_root, tmp_path):
    from typer.testing import CliRunner

    from vega3d.cli import app

    record = next(r for r in tasks.load_records(str(prepared_root), "multi3drefer") if r["scene_id"] == SCENE)
    proposals = tasks.load_proposals(str(prepared_root), "val")[f"scannet/{SCENE}"]
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(proposals))
    out, page = tmp_path / "answer.json", tmp_path / "answer.html"
    sets = [arg for s in BASELINE for arg in ("--set", s)]
    result = CliRunner().invoke(app, [
        "ask", "--scene", str(scene_dir(prepared_root, SCENE)), "--ground", description_of(record), "--single",
        "--boxes", str(boxes), "--checkpoint", str(checkpoint), *sets, "--data-root", str(prepared_root),
        "--output", str(out), "--view", str(page)])
    assert result.exit_code == 0, result.output
    answer = json.loads(out.read_text())
    data = _page_data(page.read_text())
    assert data["legend"]["graded"] is False and len(data["scenes"]) == 1
    assert data["columns"]["pred"] == [[[round(v, 2) for v in answer["best"]["aligned"]]]]
    assert len(data["columns"]["gt"][0]) == len(proposals)
    with HeadlessChromium() as browser:
        browser.open(page.as_uri(), "window.viewerReady || window.viewerError", timeout=120)
        assert browser.evaluate("window.viewerError || null") is None
        rows = browser.evaluate("document.querySelectorAll('#records tbody tr').length")
        details = browser.evaluate("document.getElementById('details').textContent")
        ok_filter_hidden = browser.evaluate("document.getElementById('f-ok').closest('label').hidden")
        png = browser.screenshot("#plot")
        assert browser.console_errors == [] and browser.remote_requests == []
    assert rows == 1 and ok_filter_hidden
    assert description_of(record) in details and "answer 1" in details and f"candidate {len(proposals)}" in details
    assert "correct" not in details
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert (~(image == 255).all(axis=-1)).sum() > 2000  # the back-projected points
    assert (np.abs(image - PRED_RED).sum(axis=-1) < 40).sum() > 50  # the answer's box
    assert (np.abs(image - CANDIDATE_GREY).sum(axis=-1) < 10).sum() > 50  # the candidates' boxes


def test_question_view_has_no_boxes(checkpoint, prepared_root, tmp_path):
    """A question's page: the question and answer, the scene's points, no box."""
    from typer.testing import CliRunner

    from vega3d.cli import app

    record = next(r for r in tasks.load_records(str(prepared_root), "scanqa") if r["scene_id"] == SCENE)
    page = tmp_path / "question.html"
    sets = [arg for s in BASELINE for arg in ("--set", s)]
    result = CliRunner().invoke(app, [
        "ask", "--scene", str(scene_dir(prepared_root, SCENE)), "--question", question_of(record),
        "--checkpoint", str(checkpoint), *sets, "--data-root", str(prepared_root), "--view", str(page)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    data = _page_data(page.read_text())
    assert data["texts"][data["columns"]["q"][0]] == question_of(record)
    assert data["texts"][data["columns"]["p"][0]] == answer["answer"]
    assert data["columns"]["gt"] == [[]] and data["columns"]["pred"] == [[]]
    assert data["scenes"][0]["count"] > 1000


def test_an_unwritable_view_is_refused_before_the_model_loads(prepared_root, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vega3d.ask.engine import AskEngine
    from vega3d.cli import app

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(AskEngine, "load", lambda *a, **k: pytest.fail("the model loaded before the check"))
    result = CliRunner().invoke(app, ["ask", "--scene", str(scene_dir(prepared_root, SCENE)), "--question", "q",
                                      "--view", str(blocker / "page.html")])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"error: cannot start, fix these first: output {blocker} is not writable")
    assert lines[1].startswith("  fix: ") and len(lines) == 2
    assert blocker.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]
