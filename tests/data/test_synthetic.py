"""The synthetic generator: deterministic truth with the promised properties, and files that agree with it."""

from __future__ import annotations

import json
from collections import Counter
from itertools import combinations

import numpy as np

from tests.data.helpers import SMALL_CONFIG, aligned_mesh_vertices
from vega3d.config import SyntheticConfig
from vega3d.data import embodiedscan, scannet
from vega3d.data.boxes import box_from_points, box_iou_matrix
from vega3d.data.frames import load_scene_frames, scene_frame_ids
from vega3d.data.geometry import world_coordinates
from vega3d.data.layout import DataLayout
from vega3d.testing.synthetic import CATEGORIES, COLORS, load_truth, scene_names, scene_truth


def test_scene_truth_is_deterministic_and_seeded():
    cfg = SyntheticConfig()
    assert scene_truth("scene0004_00", "train", 0, cfg) == scene_truth("scene0004_00", "train", 0, cfg)
    assert scene_truth("scene0004_00", "train", 0, cfg) != scene_truth("scene0004_00", "train", 1, cfg)
    assert scene_truth("scene0004_00", "train", 0, cfg) != scene_truth("scene0005_00", "train", 0, cfg)


def test_scene_truth_properties_over_many_scenes():
    cfg = SyntheticConfig()
    for number in range(40):
        truth = scene_truth(f"scene{number:04d}_00", "train", 3, cfg)
        objects = truth.objects
        assert cfg.min_objects <= len(objects) <= cfg.max_objects
        assert [o.object_id for o in objects] == list(range(len(objects)))
        assert max(Counter(o.label for o in objects).values()) >= 2  # a repeated label ("multiple" cases)
        for obj in objects:
            assert obj.nyu40_id == CATEGORIES[obj.label].nyu40_id and tuple(obj.rgb) == COLORS[obj.color]
            box = np.asarray(obj.box)
            bottom = box[2] - box[5] / 2
            assert abs(bottom - (0.9 if obj.label == "window" else 0.0)) < 1e-3  # on the floor (windows: sill)
            assert (np.abs(box[:2]) + box[3:5] / 2 <= np.asarray(truth.room[:2]) / 2 + 1e-3).all()  # inside
        for a, b in combinations(objects, 2):  # no overlaps
            assert box_iou_matrix(np.asarray(a.box), np.asarray(b.box))[0, 0] == 0.0
        same_label = Counter((o.label, o.color) for o in objects)
        assert all(count == 1 for count in same_label.values()) or len(objects) > len(COLORS)
        align = np.asarray(truth.axis_align)
        np.testing.assert_allclose(align[:3, :3] @ align[:3, :3].T, np.eye(3), atol=1e-5)
        assert abs(align[2, 2] - 1) < 1e-9 and not np.allclose(align, np.eye(4))  # rotation about z + shift


def test_split_names_and_files(small_synthetic_root):
    layout = DataLayout(small_synthetic_root)
    names = scene_names(SMALL_CONFIG)
    assert names == {"train": ["scene0000_00", "scene0001_00"], "val": ["scene0002_00"], "test": ["scene0003_00"]}
    for split, scenes in names.items():
        assert layout.split_file_path(split).read_text().split() == scenes
    truths = load_truth(small_synthetic_root)
    assert [t.scene for t in truths] == [s for split in ("train", "val", "test") for s in names[split]]
    raw = json.loads((small_synthetic_root / "synthetic_truth.json").read_text())
    assert raw[0]["objects"][0]["box"] == truths[0].objects[0].box


def test_frames_poses_and_infos_agree(small_synthetic_root):
    layout = DataLayout(small_synthetic_root)
    for truth in load_truth(small_synthetic_root):
        ids = scene_frame_ids(layout, truth.scene)
        assert ids == list(range(0, 160, 10))
        infos = embodiedscan.infos_by_scene(embodiedscan.read_infos(layout.embodiedscan_info_path(truth.split)))
        entry = infos[truth.scene]
        assert [im["img_path"] for im in entry["images"]] == [
            f"scannet/posed_images/{truth.scene}/{f:05d}.jpg" for f in ids]
        np.testing.assert_allclose(entry["axis_align_matrix"], truth.axis_align, atol=1e-9)
        np.testing.assert_allclose(
            scannet.read_axis_alignment(layout.scan_meta_path(truth.scene)), truth.axis_align, atol=1e-8)
        frames = load_scene_frames(layout, truth.scene, ids)
        assert frames.rgb.shape == (16, 120, 160, 3) and frames.depth.shape == (16, 120, 160)
        np.testing.assert_allclose(np.stack([im["cam2global"] for im in entry["images"]]), frames.cam2world, atol=1e-7)
        np.testing.assert_allclose(entry["depth_cam2img"], frames.depth_intrinsic, atol=1e-9)
        # Cameras are in the OpenCV convention: rotation columns right, down, forward; +y of the camera is down.
        aligned = truth.axis_align @ frames.cam2world
        assert (aligned[:, 2, 1] < 0).all()  # camera y (down) points to -z in the aligned frame
        assert (np.abs(np.linalg.det(aligned[:, :3, :3]) - 1) < 1e-6).all()


def test_rendered_colours_match_object_colours(small_synthetic_root):
    layout = DataLayout(small_synthetic_root)
    truth = load_truth(small_synthetic_root)[0]
    frames = load_scene_frames(layout, truth.scene, scene_frame_ids(layout, truth.scene))
    xyz, valid = world_coordinates(frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align)
    seen = 0
    for obj in truth.objects:
        box = np.asarray(obj.box)
        # pixels well inside the object's projection: their point is on the box and 3 cm from its edges
        on_box = valid & (np.abs(xyz - box[:3]) <= box[3:] / 2 + 0.002).all(-1)
        inner = on_box & ((np.abs(xyz - box[:3]) <= box[3:] / 2 - 0.03).sum(-1) >= 2)
        if inner.sum() < 50:
            continue
        seen += 1
        mean = frames.rgb[inner].astype(np.float64).mean(0)
        rgb = np.asarray(obj.rgb, dtype=np.float64)
        # Lambert shading scales the colour by 0.55..1.0; JPEG adds a little noise.
        assert (mean >= 0.5 * rgb - 12).all() and (mean <= rgb + 12).all(), (obj.label, obj.color, mean)
    assert seen >= 3


def test_mesh_segments_and_aggregation_give_the_true_boxes(small_synthetic_root):
    layout = DataLayout(small_synthetic_root)
    for truth in load_truth(small_synthetic_root):
        vertices = aligned_mesh_vertices(layout, truth.scene)
        aggregation = scannet.read_aggregation(layout.aggregation_path(truth.scene))
        assert aggregation.object_ids == [o.object_id for o in truth.objects]
        assert aggregation.labels == [o.label for o in truth.objects]
        instance = scannet.vertex_instance_ids(scannet.read_segments(layout.segs_path(truth.scene)), aggregation)
        assert len(instance) == len(vertices)
        for obj in truth.objects:
            np.testing.assert_allclose(box_from_points(vertices[instance == obj.object_id]), obj.box, atol=1e-4)
        floor = vertices[instance < 0]
        assert np.abs(floor[:, 2]).min() < 1e-5 and (np.abs(floor[:, :2]) <= np.asarray(truth.room[:2]) / 2 + 1e-4).all()


def test_predicted_masks_are_jittered_truth_plus_spurious(small_synthetic_root):
    layout = DataLayout(small_synthetic_root)
    for truth in load_truth(small_synthetic_root):
        aggregation = scannet.read_aggregation(layout.aggregation_path(truth.scene))
        instance = scannet.vertex_instance_ids(scannet.read_segments(layout.segs_path(truth.scene)), aggregation)
        masks = scannet.read_masks(layout.mask_path(truth.scene)).toarray()
        assert masks.shape[1] == len(instance)
        assert len(truth.objects) + 2 <= len(masks) <= len(truth.objects) + 3
        ious = np.array([[(m & (instance == o.object_id)).sum() / (m | (instance == o.object_id)).sum()
                          for o in truth.objects] for m in masks])  # [masks, objects]
        best = ious.max(axis=0)
        assert (best > 0.7).all() and (best < 1.0).all()  # every object found, none copied exactly
        assert ((ious.max(axis=1) < 0.05).sum()) >= 2  # spurious masks
