"""`ask` on a ScanNet-layout scene answers exactly what the evaluation code answers on the same record."""

import numpy as np
import pytest

from tests.ask.helpers import apply, description_of, human_text, question_of, scene_dir
from vega3d.ask.engine import AskRequest
from vega3d.data import scannet
from vega3d.data.layout import DataLayout
from vega3d.evaluation import tasks
from vega3d.evaluation.predictors import ModelPredictor


def evaluation(loaded, task):
    cfg, model, tokenizer = loaded
    split = tasks.DEFAULT_SPLITS[task]
    props = tasks.load_proposals(cfg.data.root, split) if task in ("scanrefer", "multi3drefer", "scan2cap") else None
    return ModelPredictor(model, tokenizer, cfg, task, props), tasks.load_records(cfg.data.root, task)


def test_question_equals_evaluation(loaded, engine):
    predict, records = evaluation(loaded, "scanqa")
    records = records[:4]
    expected = [p["answer"] for p in predict(records)]
    root = loaded[0].data.root
    got = engine.ask([AskRequest(scene=str(scene_dir(root, r["scene_id"])), question=question_of(r)) for r in records])
    assert [g["answer"] for g in got] == expected
    assert any(expected)  # the tiny model says something, so equality is not two empty strings
    assert all(g["operation"] == "question" and not g["alignment_estimated"] for g in got)


def test_situated_question_equals_sqa3d_evaluation(loaded, engine):
    predict, records = evaluation(loaded, "sqa3d")
    records = records[:3]
    expected = [p["answer"] for p in predict(records)]
    root = loaded[0].data.root
    requests = []
    for r in records:  # "{situation} {question} Answer ..." : any split at a space gives the same prompt
        text = human_text(r).removesuffix(" Answer the question using a single word or phrase.")
        situation, question = text.rsplit(". ", 1)
        requests.append(AskRequest(scene=str(scene_dir(root, r["scene_id"])), situation=situation + ".",
                                   question=question))
    assert [g["answer"] for g in engine.ask(requests)] == expected


@pytest.mark.parametrize("task", ["scanrefer", "multi3drefer"])
def test_grounding_equals_evaluation(loaded, engine, task):
    predict, records = evaluation(loaded, task)
    records = records[:4]
    expected = predict(records)
    root = loaded[0].data.root
    proposals = tasks.load_proposals(root, "val")
    got = engine.ask([AskRequest(scene=str(scene_dir(root, r["scene_id"])), ground=description_of(r),
                                 multiple=task == "multi3drefer", boxes=proposals[r["video"]]) for r in records])
    settings = tasks.ScoreSettings(multi3drefer_threshold=loaded[0].model.multi3drefer_threshold,
                                   ground_temperature=loaded[0].model.ground_temperature)
    for g, e, r in zip(got, expected, records, strict=True):
        assert len(g["proposals"]) == len(proposals[r["video"]])
        if task == "scanrefer":
            np.testing.assert_allclose(g["best"]["aligned"], e["box"], atol=1e-9)
        else:
            np.testing.assert_allclose(g["scores"], e["scores"], atol=1e-5)
            np.testing.assert_allclose([b["aligned"] for b in g["boxes"]],
                                       np.reshape(tasks.multi3drefer_boxes(e, settings), (-1, 6)), atol=1e-9)
        # the input frame of a ScanNet scene is its raw scan frame: centres map back through axisAlignment
        align = scannet.read_axis_alignment(DataLayout(root).scan_meta_path(r["scene_id"]))
        np.testing.assert_allclose(apply(align, g["best"]["center"]), g["best"]["aligned"][:3], atol=1e-6)


def test_caption_equals_evaluation(loaded, engine):
    predict, records = evaluation(loaded, "scan2cap")
    expected = [p for p in predict(records[:6]) if p["box"] is not None]
    assert expected
    root = loaded[0].data.root
    by_id = {r["id"]: r for r in records}
    got = engine.ask([AskRequest(scene=str(scene_dir(root, by_id[e["id"]]["scene_id"])), caption_box=e["box"])
                      for e in expected])
    assert [g["caption"] for g in got] == [e["caption"] for e in expected]
    assert any(e["caption"] for e in expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g["box"]["aligned"], e["box"])


def test_invalid_requests_name_the_field(engine, prepared_root):
    scene = str(scene_dir(prepared_root, "scene0002_00"))
    cases = [
        (AskRequest(scene=scene), "exactly one of"),
        (AskRequest(scene=scene, question="a?", ground="b"), "exactly one of"),
        (AskRequest(scene=scene, caption_box=[1, 2, 3]), "caption_box"),
        (AskRequest(scene=scene, ground="x", boxes=[[0, 0, 0, 1, 1, -1]]), "boxes[0]"),
        (AskRequest(scene=scene, question=""), "question"),
        (AskRequest(scene=scene, question="a?", box_frame="world"), "box_frame"),
        (AskRequest(scene=scene, question="a?", axis_alignment=[[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
         "axis_alignment: must be rigid"),
        (AskRequest(scene=scene, question="a?", axis_alignment=[[1, 0], [0, 1]]), "axis_alignment: must be a 4x4"),
    ]
    for request, field in cases:
        with pytest.raises(ValueError, match=field.replace("[", r"\[")):
            engine.ask([request])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        engine.ask([AskRequest(scene=str(prepared_root / "nope"), question="a?")])


def test_max_coverage_sampling_picks_frames_of_a_user_scene(loaded, tmp_path, prepared_root):
    """With data.sampling=max-coverage a user scene gets greedy picks over the union of its frames' voxels."""
    from vega3d.ask.engine import AskEngine
    from vega3d.data.frames import scene_frame_ids
    from vega3d.data.sampling import coverage_selection, sample_frame_ids, scene_frame_voxels, uniform_indices

    cfg, model, tokenizer = loaded
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"sampling": "max-coverage"})})
    engine = AskEngine(cfg, model, tokenizer, None, tmp_path / "stage")
    (got,) = engine.ask([AskRequest(scene=str(scene_dir(prepared_root, "scene0002_00")), question="what is it?")])
    assert isinstance(got["answer"], str)
    layout, scene = engine.stager.layout, "scene0002_00"
    all_frames = scene_frame_ids(layout, scene)
    voxels = np.unique(np.concatenate(scene_frame_voxels(layout, scene, all_frames)), axis=0)
    entry = coverage_selection(layout, scene, voxels, 32)
    picked = engine.generate.visual.frame_ids(scene)
    assert picked == sample_frame_ids(layout, scene, "max-coverage", cfg.data.frames_upbound,
                                      {entry["video_id"]: entry})
    assert len(picked) == cfg.data.frames_upbound
    assert picked != [all_frames[i] for i in uniform_indices(len(all_frames), cfg.data.frames_upbound)]


def test_requests_of_one_operation_share_one_model_call(loaded, engine, prepared_root, monkeypatch):
    """3 grounding requests on 2 scenes -> one forward; 2 questions -> one batched greedy decode."""
    model = loaded[1]
    root = loaded[0].data.root
    boxes = tasks.load_proposals(root, "val")["scannet/scene0002_00"]
    scenes = ("scene0002_00", "scene0003_00")
    forwards = []
    handle = model.register_forward_hook(lambda *args: forwards.append(1))
    decodes = []
    original = model.generate_greedy
    monkeypatch.setattr(model, "generate_greedy", lambda *a, **k: decodes.append(1) or original(*a, **k))
    try:
        grounding = [AskRequest(scene=str(scene_dir(root, scenes[i % 2])), ground=f"the object {i}", boxes=boxes)
                     for i in range(3)]
        engine.ask(grounding)
        assert len(forwards) == 1
        engine.ask([AskRequest(scene=str(scene_dir(root, "scene0002_00")), question=q) for q in ("a?", "b?")])
        assert len(decodes) == 1
    finally:
        handle.remove()


def test_builtin_proposals_are_used_without_boxes(loaded, tmp_path, prepared_root):
    from vega3d.ask.alignment import oriented_points
    from vega3d.ask.engine import AskEngine
    from vega3d.ask.proposals import builtin_proposals

    cfg, model, tokenizer = loaded
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"max_proposals": 3})})
    engine = AskEngine(cfg, model, tokenizer, None, tmp_path / "stage")
    (got,) = engine.ask([AskRequest(scene=str(scene_dir(prepared_root, "scene0002_00")), ground="the chair")])
    layout = DataLayout(prepared_root)
    align = scannet.read_axis_alignment(layout.scan_meta_path("scene0002_00"))
    expected = builtin_proposals(oriented_points(layout, "scene0002_00", align, max_frames=64), 3)
    assert len(expected) == 3 and len(got["scores"]) == 4
    np.testing.assert_allclose([p["aligned"] for p in got["proposals"]], expected, atol=1e-9)
