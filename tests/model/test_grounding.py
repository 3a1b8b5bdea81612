"""Grounding: patch selection, object features, InfoNCE loss, ScanRefer / Multi3DRefer selection rules."""

import math

import pytest
import torch

from vega3d.model.grounding import (
    InfoNCEGroundHead,
    batch_ground_scores,
    caption_box,
    infonce_loss,
    object_features,
    patch_box_membership,
    scene_groups,
    select_multi3drefer,
    select_scanrefer,
)
from vega3d.model.position_encoding import discretize, encode_positions, sin3d


def pixel_grid_world() -> tuple[torch.Tensor, torch.Tensor]:
    """One 4x4 frame (2x2 patches of 2x2 pixels); pixel (r, c) sits at world (c + .5, r + .5, 0)."""
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    world = torch.stack([cols + 0.5, rows + 0.5, torch.zeros(4, 4)], dim=-1).unsqueeze(0)  # [1, 4, 4, 3]
    return world, torch.ones(1, 4, 4, dtype=torch.bool)


# Box A covers x in [0, 3], y in [0, 2]: all 4 pixels of patch (0,0), 2 of 4 of patch (0,1), none else.
BOX_A = [1.5, 1.0, 0.0, 3.0, 2.0, 1.0]
BOX_EMPTY = [10.0, 10.0, 0.0, 1.0, 1.0, 1.0]


def test_patch_membership_needs_half_the_pixels():
    world, valid = pixel_grid_world()
    member = patch_box_membership(world, valid, torch.tensor([BOX_A, BOX_EMPTY]), patch=2, patch_grid=2)
    assert member.tolist() == [[True, True, False, False], [False, False, False, False]]
    valid[0, 0, 2] = False  # patch (0,1) now has 1 of 4 pixels inside -> excluded
    member = patch_box_membership(world, valid, torch.tensor([BOX_A]), patch=2, patch_grid=2)
    assert member.tolist() == [[True, False, False, False]]


def test_patch_membership_margin_keeps_points_on_the_box_faces():
    # A 2x2-pixel patch on the face x = 3 of a box spanning x in [1, 3]: depth quantisation puts the
    # back-projected points 0.4 mm either side of the face, two of them outside the box.
    world = torch.tensor([[[[3.0004, 0.5, 0.5], [2.9996, 1.5, 0.5]], [[3.0004, 0.5, 1.5], [3.0004, 1.5, 1.5]]]])
    valid = torch.ones(1, 2, 2, dtype=torch.bool)
    box = torch.tensor([[2.0, 1.0, 1.0, 2.0, 2.0, 2.0]])
    assert patch_box_membership(world, valid, box, patch=2, patch_grid=1).tolist() == [[False]]  # 1 of 4 inside
    assert patch_box_membership(world, valid, box, patch=2, patch_grid=1, margin=0.001).tolist() == [[True]]
    feats = torch.ones(1, 1, 6)
    empty, kept = (object_features(feats, world, valid, box, patch=2, margin=m) for m in (0.0, 0.001))
    assert torch.equal(empty[0], encode_positions(box[0, :3], 6))  # no patch: zero + sin3d(centre)
    torch.testing.assert_close(kept[0], 1.0 + encode_positions(box[0, :3], 6))


def test_object_features_mean_plus_centre_encoding():
    world, valid = pixel_grid_world()
    dim = 6
    feats = torch.arange(4 * dim, dtype=torch.float32).reshape(1, 4, dim)  # E of patches 0..3
    got = object_features(feats, world, valid, torch.tensor([BOX_A, BOX_EMPTY]), patch=2)
    expected_a = (feats[0, 0] + feats[0, 1]) / 2 + encode_positions(torch.tensor(BOX_A[:3]), dim)
    torch.testing.assert_close(got[0], expected_a)


def test_no_patch_object_feature_is_sin3d_of_centre():
    """SPEC section 7 item 5: a box no patch qualifies for gets zero + sin3d(centre), the centre discretised
    as the position encoding does (clamp, shift by the minimum, / 0.1, round)."""
    world, valid = pixel_grid_world()
    dim = 9
    feats = torch.randn(1, 4, dim)
    # BOX_EMPTY's centre (10, 10, 0) m: (10 + 15) / 0.1 = 250, (10 + 15) / 0.1 = 250, (0 + 5) / 0.1 = 50
    assert discretize(torch.tensor(BOX_EMPTY[:3])).tolist() == [250.0, 250.0, 50.0]
    # F = 3 features per axis, f = 1, 1, 10000^(2/3): sin(c), cos(c), sin(c / 10000^(2/3)) per axis
    by_hand = torch.tensor([math.sin(250), math.cos(250), math.sin(250 / 10000 ** (2 / 3))] * 2
                           + [math.sin(50), math.cos(50), math.sin(50 / 10000 ** (2 / 3))])
    expected = sin3d(torch.tensor([250.0, 250.0, 50.0]), dim)
    torch.testing.assert_close(expected, by_hand)
    # outside the clamp range too: (-20, 30, 7) m -> (0, 300, 100)
    far = [-20.0, 30.0, 7.0, 1.0, 1.0, 1.0]
    got = object_features(feats, world, valid, torch.tensor([BOX_A, BOX_EMPTY, far]), patch=2)
    assert torch.equal(got[1], expected)
    assert torch.equal(got[2], sin3d(torch.tensor([0.0, 300.0, 100.0]), dim))
    batched = object_features(feats[None].repeat(2, 1, 1, 1), world[None].repeat(2, 1, 1, 1, 1),
                              valid[None].repeat(2, 1, 1, 1), torch.tensor([[BOX_EMPTY], [far]]), patch=2)
    assert torch.equal(batched[:, 0], torch.stack([expected, got[2]]))


def test_infonce_loss_by_hand():
    # tau = 1 and scores ln(4), ln(3), ln(2), zero-target ln(1): e^s = 4, 3, 2, 1 (sum 10)
    scores = torch.tensor([math.log(4), math.log(3), math.log(2), 0.0])
    loss = infonce_loss(scores, torch.tensor([True, False, True]), temperature=1.0)
    assert loss.item() == pytest.approx(-math.log(6 / 10), abs=1e-6)
    no_target = infonce_loss(scores, torch.tensor([False, False, False]), temperature=1.0)
    assert no_target.item() == pytest.approx(-math.log(1 / 10), abs=1e-6)
    scaled = infonce_loss(scores * 0.07, torch.tensor([True, False, False]), temperature=0.07)
    assert scaled.item() == pytest.approx(-math.log(4 / 10), abs=1e-5)


def test_scanrefer_takes_best_real_proposal_even_if_zero_target_wins():
    assert select_scanrefer(torch.tensor([0.1, 0.5, 0.3, 0.9])) == 1


def test_multi3drefer_zero_target_wins_predicts_nothing():
    assert select_multi3drefer(torch.tensor([0.2, 0.8, 0.85]), temperature=0.07, threshold=0.4) == []


@pytest.mark.parametrize(("threshold", "expected"), [(0.35, [0]), (0.5, [0, 1]), (0.85, [0, 1, 2])])
def test_multi3drefer_cumulative_threshold(threshold, expected):
    # tau = 1: p = 0.4, 0.3, 0.2 for the proposals and 0.1 for the zero-target
    scores = torch.tensor([math.log(4), math.log(3), math.log(2), 0.0])
    assert select_multi3drefer(scores, temperature=1.0, threshold=threshold) == expected


def test_multi3drefer_orders_by_probability():
    scores = torch.tensor([math.log(2), math.log(4), math.log(3), 0.0])
    assert select_multi3drefer(scores, temperature=1.0, threshold=0.6) == [1, 2]


def test_head_scores_are_cosines_with_zero_target_last():
    torch.manual_seed(0)
    head = InfoNCEGroundHead(8)
    objects, query = torch.randn(3, 8), torch.randn(8)
    scores = head(objects, query)
    assert scores.shape == (4,)
    objs = head.object_mlp(torch.cat([objects, head.zero_target[None]]))
    q = head.query_mlp(query[None])
    torch.testing.assert_close(scores, torch.nn.functional.cosine_similarity(objs, q))
    assert scores.abs().max() <= 1.0


def test_empty_object_gets_a_finite_gradient_from_the_initialised_head():
    """A zero object feature must not land on the cosine's singular point (MLP output exactly 0)."""
    from tests.model.helpers import tiny_model

    model = tiny_model()
    head = model.ground_head
    dim = head.zero_target.numel()
    assert head.object_mlp[0].bias.abs().max() > 0  # torch's default bias init, not zeros
    assert head.object_mlp(torch.zeros(1, dim)).norm() > 0.1
    objects = torch.cat([torch.zeros(1, dim), torch.randn(2, dim) * 5.0])  # one object no patch qualified for
    loss = infonce_loss(head(objects, torch.randn(dim)), torch.tensor([False, True, False]), temperature=0.07)
    loss.backward()
    grad_norm = torch.cat([p.grad.reshape(-1) for p in head.parameters()]).norm()
    assert torch.isfinite(grad_norm) and grad_norm < 1e3, grad_norm  # ~1e8 with zero biases
    with torch.no_grad():
        head.object_mlp[0].bias.zero_()  # the transformers default: 0 maps to exactly 0 -> singular cosine
    head.zero_grad()
    infonce_loss(head(objects, torch.randn(dim)), torch.tensor([False, True, False]), 0.07).backward()
    assert torch.cat([p.grad.reshape(-1) for p in head.parameters()]).norm() > 1e5


def test_caption_box_best_proposal_above_iou():
    gt = torch.tensor([0.0, 0.0, 0.0, 2.0, 2.0, 2.0])
    # IoU with gt: identical box 1.0; half-shifted box 4 / (8 + 8 - 4) = 1/3
    proposals = torch.tensor([[1.0, 0.0, 0.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]])
    assert torch.equal(caption_box(gt, proposals), proposals[1])
    assert caption_box(gt, proposals[:1]) is None  # 1/3 < 0.5
    assert torch.equal(caption_box(gt, proposals[:1], min_iou=0.3), proposals[0])
    assert caption_box(gt, torch.zeros(0, 6)) is None


def test_membership_of_a_batch_of_scenes_equals_each_scene_alone_in_any_chunking():
    gen = torch.Generator().manual_seed(0)
    world = torch.rand(3, 2, 8, 8, 3, generator=gen) * 4.0  # 3 scenes, 2 frames, 8x8 pixels (4x4 patches of 2)
    valid = torch.rand(3, 2, 8, 8, generator=gen) > 0.2
    boxes = torch.cat([torch.rand(3, 5, 3, generator=gen) * 4.0, torch.rand(3, 5, 3, generator=gen) * 3.0], dim=-1)
    together = patch_box_membership(world, valid, boxes, patch=2, patch_grid=4)
    assert together.shape == (3, 5, 2 * 16) and 0 < together.sum() < together.numel()
    for chunk in (1, 8 * 8 * 2 * 3, 10**9):  # one pixel test per chunk -> one box per chunk; two boxes; all
        assert torch.equal(patch_box_membership(world, valid, boxes, 2, 4, chunk_elements=chunk), together)
    for scene in range(3):
        alone = patch_box_membership(world[scene], valid[scene], boxes[scene], patch=2, patch_grid=4)
        assert torch.equal(alone, together[scene])
        # by hand for one box: fraction of valid pixels inside, per 2x2 patch, >= 1/2
        lo, hi = boxes[scene, 0, :3] - boxes[scene, 0, 3:] / 2, boxes[scene, 0, :3] + boxes[scene, 0, 3:] / 2
        inside = valid[scene] & ((world[scene] >= lo) & (world[scene] <= hi)).all(-1)  # [2, 8, 8]
        frac = inside.float().reshape(2, 4, 2, 4, 2).mean(dim=(2, 4))
        assert torch.equal(alone[0], (frac >= 0.5).reshape(-1))


def test_batch_scores_group_shared_scenes_and_equal_each_sample_alone():
    torch.manual_seed(0)
    dim, head = 6, InfoNCEGroundHead(6)
    world, valid = pixel_grid_world()
    other_world = world + 0.5
    feats, other_feats = torch.randn(1, 4, dim), torch.randn(1, 4, dim)
    shared = torch.tensor([BOX_A, BOX_EMPTY])
    # samples 0 and 1: one scene (same tensor objects) and equal boxes; 2: another scene, 3 boxes; 3: scene 0, 1 box
    samples = [(feats, world, shared), (feats, world, shared.clone()),
               (other_feats, other_world, torch.tensor([BOX_A, BOX_A, BOX_EMPTY])), (feats, world, shared[:1])]
    firsts, group = scene_groups([s[0] for s in samples], [s[1] for s in samples], [valid] * 4, [s[2] for s in samples])
    assert firsts == [0, 2, 3] and group.tolist() == [0, 0, 1, 2]
    queries = torch.randn(4, dim)
    scores, real = batch_ground_scores(head, [s[0] for s in samples], [s[1] for s in samples], [valid] * 4,
                                       [s[2] for s in samples], queries, patch=2)
    assert scores.shape == (4, 4) and real.tolist() == [[True, True, False]] * 2 + [[True] * 3, [True, False, False]]
    for i, (f, w, b) in enumerate(samples):
        alone = head(object_features(f, w, valid, b, patch=2), queries[i])  # [K_i + 1]
        got = torch.cat([scores[i, : b.shape[0]], scores[i, -1:]])
        torch.testing.assert_close(got, alone, rtol=0, atol=1e-6)
    positives = torch.tensor([[True, False, False], [False, False, False], [False, True, True], [True, False, False]])
    losses = infonce_loss(scores, positives, 0.07, real)
    for i, (_, _, b) in enumerate(samples):
        k = b.shape[0]
        alone = infonce_loss(torch.cat([scores[i, :k], scores[i, -1:]]), positives[i, :k], 0.07)
        torch.testing.assert_close(losses[i], alone)
